"""How the task waits for a training process (workers/watch.py): a SIGKILL at the memory limit reads as out of
memory, one well below it as a lost process (retried as worker_lost)."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.migrate import upgrade_to_head
from workers.watch import watch

RESIDENT = 200 * 2**20


def test_a_sigkill_at_the_memory_limit_is_out_of_memory_and_below_it_is_not(tmp_path: Path) -> None:
    settings = Settings(nnforge_home=tmp_path, cancel_grace_seconds=0.4)  # polls every 0.1 s
    upgrade_to_head(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    holder = "import sys, time; x = bytearray(int(sys.argv[1])); print(flush=True); time.sleep(60)"
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(RESIDENT)], stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdout is not None and process.stdout.readline()  # its memory is resident
    killer = threading.Timer(1.0, os.kill, (process.pid, signal.SIGKILL))  # as the kernel's OOM killer would
    killer.start()
    try:
        ended = watch(process, settings, make_session_factory(engine), "no-such-lease")
    finally:
        killer.join()
        engine.dispose()
    assert ended.code == -signal.SIGKILL and not ended.cancelled
    assert ended.peak_rss >= RESIDENT
    assert ended.out_of_memory(RESIDENT)  # at its limit when killed
    assert not ended.out_of_memory(10 * RESIDENT)  # far below it: a lost process
