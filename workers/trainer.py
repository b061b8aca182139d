"""The training process: one per job, started by the task, never forked from a process that touched CUDA.

    python -m workers.trainer JOB_ID LEASE_TOKEN
    python -m workers.trainer --standby PLACEHOLDER    # then reads "JOB_ID LEASE_TOKEN REQUEST_ID" on stdin

A standby process is started ahead of the next job (workers.supervisor): it imports torch and the engine
while the worker is idle, then waits for its one job on stdin, which cuts seconds off every job's start. It
then shows the job in its command line, as a process started for the job would.

SIGTERM (a worker's warm shutdown) makes it checkpoint and hand the job back to the queue. It dies with the
task process that started it (PR_SET_PDEATHSIG), so a killed worker leaves no orphan training.
"""

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from app.core.queue import make_celery, publish_job
from app.core.request_id import ENV as REQUEST_ID_ENV
from app.core.settings import get_settings
from app.db.engine import make_engine, make_session_factory
from workers.job_log import job_log
from workers.job_store import JobStore
from workers.runner import StopSignals, run_claimed

PR_SET_PDEATHSIG = 1
STANDBY = "--standby"
NO_REQUEST_ID = "-"
log = logging.getLogger("nnforge.worker")


def die_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(job_id: str, token: str) -> int:
    die_with_parent()
    signals = StopSignals()

    def hand_back(signum: int, frame: FrameType | None) -> None:
        signals.shutdown.set()

    signal.signal(signal.SIGTERM, hand_back)
    import torch

    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    engine = make_engine(settings.resolved_database_url)
    store = JobStore(
        make_session_factory(engine),
        job_id,
        token,
        outage_seconds=settings.db_outage_seconds,
        storage_limit=settings.max_storage_bytes_per_owner,
    )
    claimed = store.claim(max_running_per_owner=settings.max_running_jobs_per_owner)
    if claimed is None:
        log.info("job %s is not queued; nothing to do", job_id)
        return 0
    # The job's own log lines, served by GET /v1/jobs/{id}/logs.
    with job_log(store.factory, job_id, claimed.attempt, claimed.spec["training"]["device"]):
        outcome = run_claimed(store, claimed, signals, settings.heartbeat_seconds)
    if outcome == "handed_back":
        publish_job(make_celery(settings), job_id, claimed.queue)
    engine.dispose()
    return 0


def standby() -> int:
    """Import what every job needs, then run the one job named on stdin (none at end of input)."""
    die_with_parent()
    import torch._dynamo  # noqa: F401  (torch.optim imports it on the first optimizer: a second or two)

    make_engine(get_settings().resolved_database_url).dispose()  # imports the database driver (~0.25 s)

    words = sys.stdin.readline().split()
    if len(words) != 3:
        return 0  # the worker went away, or never sent a job
    job_id, token, request_id = words
    if request_id == NO_REQUEST_ID:
        os.environ.pop(REQUEST_ID_ENV, None)
    else:
        os.environ[REQUEST_ID_ENV] = request_id
    show_in_command_line(job_id, token)
    return main(job_id, token)


def show_in_command_line(job_id: str, token: str) -> None:
    """Make /proc/PID/cmdline (and ps) read `python -m workers.trainer JOB_ID LEASE_TOKEN`, as for a process
    started for the job: operators and the fault tests find a job's training process by its command line.
    Rewrites the argv area in place, as setproctitle does, in the room the standby's placeholder reserved;
    does nothing unless that area is exactly where and what the kernel says it is."""
    if sys.platform != "linux":
        return
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start and arg_end, fields 48 and 49 of proc(5)
    current = Path("/proc/self/cmdline").read_bytes()
    wanted = b"\0".join([*current.split(b"\0")[:3], job_id.encode(), token.encode()]) + b"\0"
    if (
        end - start != len(current)
        or len(wanted) > len(current)
        or ctypes.string_at(start, len(current)) != current
    ):
        log.warning("job %s: could not show the job in the command line of process %d", job_id, os.getpid())
        return
    ctypes.memmove(start, wanted.ljust(len(current), b"\0"), len(current))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.nice(get_settings().trainer_nice)  # before anything else: the API and the database come first
    code = standby() if sys.argv[1] == STANDBY else main(sys.argv[1], sys.argv[2])
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is written and closed: skip tearing down torch's modules (over a second)
