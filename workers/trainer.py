"""The training process: one per job, never forked from a process that touched CUDA. On a CPU queue it is a
child of the task process's zygote (workers.zygote, which imported all this once); elsewhere a fresh
standby process:

    python -m workers.trainer --standby PLACEHOLDER    # then reads "QUEUE LEASE_TOKEN JOB_ID" on stdin

A standby is started ahead of the next job (workers.supervisor): it imports torch and the engine while the
worker is idle, then waits on stdin for the queue of the message the task received (and the job that message
named), which cuts seconds off every job's start. Either way the process claims the fairest job of that
queue (app.db.job_state.claim), not necessarily the one named, and shows the job it claimed in its command
line (`workers.trainer JOB_ID LEASE_TOKEN`). The claim is made here, after the imports, so that the lease is
born in the process that keeps it alive.

SIGTERM (a worker's warm shutdown) makes it checkpoint and hand the job back to the queue. It dies with the
process that started it (PR_SET_PDEATHSIG: the task process, or the zygote, which dies with the task
process), so a killed worker leaves no orphan training.
"""

import ctypes
import logging
import os
import resource
import signal
import sys
from pathlib import Path
from types import FrameType

from app.core.queue import make_celery, publish_job
from app.core.request_id import ENV as REQUEST_ID_ENV
from app.core.settings import Settings, get_settings
from app.db.engine import make_engine, make_session_factory
from workers.job_log import job_log
from workers.job_store import JobStore, claim_next
from workers.runner import StopSignals, run_claimed

PR_SET_PDEATHSIG = 1
STANDBY = "--standby"
log = logging.getLogger("nnforge.worker")


def die_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(queue: str, token: str, message_job_id: str) -> int:
    """Claim the fairest job of `queue` and run it; the message that woke us named `message_job_id`."""
    die_with_parent()
    signals = StopSignals()

    def hand_back(signum: int, frame: FrameType | None) -> None:
        signals.shutdown.set()

    signal.signal(signal.SIGTERM, hand_back)
    import torch

    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    claimed = claim_next(
        factory,
        queue=queue,
        token=token,
        max_running_per_owner=settings.max_running_jobs_per_owner,
        outage_seconds=settings.db_outage_seconds,
    )
    if claimed is None:
        log.info("queue %s: no job can start (woken for job %s)", queue, message_job_id)
        return 0
    show_in_command_line(claimed.id, token)
    if claimed.request_id is not None:  # the POST that queued this job, whichever message woke us
        os.environ[REQUEST_ID_ENV] = claimed.request_id
    if claimed.id != message_job_id:
        log.info(
            "job %s starts on the message sent for job %s (its turn came first)", claimed.id, message_job_id
        )
    store = JobStore(
        factory,
        claimed.id,
        token,
        outage_seconds=settings.db_outage_seconds,
        storage_limit=settings.max_storage_bytes_per_owner,
        owner=claimed.owner,
    )
    # The job's own log lines, served by GET /v1/jobs/{id}/logs.
    with job_log(factory, claimed.id, claimed.attempt, claimed.spec["training"]["device"]):
        limit_memory(settings.max_job_memory_bytes, claimed.spec["training"]["device"])
        outcome = run_claimed(store, claimed, signals, settings.heartbeat_seconds, settings.max_step_seconds)
    if outcome == "handed_back":
        publish_job(make_celery(settings), claimed.id, claimed.queue)
    engine.dispose()
    return 0


def limit_memory(limit: int, device: str) -> None:
    """MAX_JOB_MEMORY_BYTES as this process's RLIMIT_DATA, so an allocation past it fails (MemoryError, or
    torch's "can't allocate memory") and the job ends out_of_memory instead of the machine swapping or the
    kernel killing something. RLIMIT_DATA, not RLIMIT_AS: it counts private writable memory (heap, anonymous
    mappings, thread stacks), what tensors take, while the address space also holds ~0.4 GB of shared
    libraries, glibc's 64 MB per-thread arena reservations and CUDA's reservations of many GB, none of it
    memory used. Not on CUDA, whose driver's host mappings were never tried under it: the GPU's own memory
    bounds those jobs, and its OutOfMemoryError ends them out_of_memory too."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def preload(settings: Settings) -> None:
    """Import what every job needs before the job is known; runs nothing (a zygote forks after it)."""
    import torch._dynamo  # noqa: F401  (torch.optim imports it on the first optimizer: a second or two)

    from models.registry import list_architectures

    list_architectures()  # imports every architecture's module
    make_engine(settings.resolved_database_url).dispose()  # imports the database driver (~0.25 s)


def standby() -> int:
    """Import what every job needs, then claim and run one job of the queue named on stdin (none at end of
    input)."""
    die_with_parent()
    preload(get_settings())

    words = sys.stdin.readline().split()
    if len(words) != 3:
        return 0  # the worker went away, or never sent a job
    queue, token, message_job_id = words
    os.environ.pop(REQUEST_ID_ENV, None)  # the claimed job's own, once it is known
    return main(queue, token, message_job_id)


def show_in_command_line(job_id: str, token: str) -> None:
    """Make /proc/PID/cmdline (and ps) read `python -m workers.trainer JOB_ID LEASE_TOKEN` once the job is
    claimed: operators and the fault tests find a job's training process by its command line.
    Rewrites the argv area in place, as setproctitle does, in the room the standby's placeholder reserved;
    does nothing unless that area is exactly where and what the kernel says it is."""
    if sys.platform != "linux":
        return
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start and arg_end, fields 48 and 49 of proc(5)
    current = Path("/proc/self/cmdline").read_bytes()
    # A zygote's child starts with the zygote's command line: it too becomes the trainer's.
    words = [current.split(b"\0")[0], b"-m", b"workers.trainer", job_id.encode(), token.encode()]
    wanted = b"\0".join(words) + b"\0"
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
    code = standby()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is written and closed: skip tearing down torch's modules (over a second)
