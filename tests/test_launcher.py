"""The embedded launcher's supervision (app.client.launcher) on real child processes: restart with backoff,
the crash-loop stop, nothing left behind by a child, and the stop's grace."""

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import wait_for

from app.client.launcher import CRASH_LOOP_RESTARTS, Child, CrashLoop, Supervisor


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def check_until(supervisor: Supervisor, condition: Callable[[], object], what: str) -> None:
    def checked() -> object:
        supervisor.check()
        return condition()

    wait_for(checked, timeout=20, interval=0.05, what=what)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has stopped all the same.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_child_that_exits_is_restarted_after_its_backoff_and_the_others_go_on(tmp_path: Path) -> None:
    marker = tmp_path / "ran-once"
    flaky = Child("worker", python(f"import pathlib, sys, time\np = pathlib.Path({str(marker)!r})\n"
                                   "if not p.exists(): p.touch(); sys.exit(3)\ntime.sleep(60)"))
    steady = Child("API", python("import time; time.sleep(60)"))
    said: list[str] = []
    supervisor = Supervisor([steady, flaky], say=said.append, backoff=(0.3,))
    supervisor.start()
    try:
        assert steady.process is not None and flaky.process is not None
        first_pid, api_pid = flaky.process.pid, steady.process.pid
        check_until(supervisor, lambda: said, "the exit to be noticed")
        assert said == ["the worker exited with status 3; restarting it in 0.3 s"]
        assert not flaky.running()  # not before its backoff
        check_until(supervisor, flaky.running, "the restart")
        assert flaky.process.pid != first_pid
        assert said[-1] == f"restarted the worker (pid {flaky.process.pid})"
        assert steady.running() and steady.process.pid == api_pid
    finally:
        supervisor.stop(grace=5)
    assert not steady.running() and not flaky.running()


def test_a_child_that_keeps_dying_stops_the_launcher_with_its_exit_status() -> None:
    doomed = Child("worker", python("import sys; sys.exit(7)"))
    said: list[str] = []
    supervisor = Supervisor([doomed], say=said.append, backoff=(0.05,))
    supervisor.start()
    with pytest.raises(CrashLoop) as crash:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.02)
    assert "the worker exited with status 7" in str(crash.value)
    assert f"restarted {CRASH_LOOP_RESTARTS} times" in str(crash.value)
    assert sum(line.startswith("restarted the worker") for line in said) == CRASH_LOOP_RESTARTS


def test_what_an_exited_child_started_goes_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    parent = Child(
        "worker",
        python(
            "import subprocess, sys\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\nsys.exit(1)"
        ),
    )
    supervisor = Supervisor([parent], say=lambda _: None, backoff=(60.0,))
    supervisor.start()
    check_until(supervisor, lambda: parent.restart_at, "the exit")
    grandchild = int(pid_file.read_text())
    wait_for(lambda: not alive(grandchild), timeout=10, interval=0.05, what="the grandchild to be killed")


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace() -> None:
    stubborn = Child(
        "worker", python("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)")
    )
    supervisor = Supervisor([stubborn], say=lambda _: None)
    supervisor.start()
    time.sleep(0.5)  # let it install its handler
    supervisor.stop(grace=1)
    assert stubborn.process is not None and stubborn.process.returncode == -9
