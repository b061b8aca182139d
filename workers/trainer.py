"""The training process: one per job, started by the task, never forked from a process that touched CUDA.

    python -m workers.trainer JOB_ID LEASE_TOKEN

SIGTERM (a worker's warm shutdown) makes it checkpoint and hand the job back to the queue. It dies with the
task process that started it (PR_SET_PDEATHSIG), so a killed worker leaves no orphan training.
"""

import ctypes
import logging
import signal
import sys
from types import FrameType

from app.db.engine import make_engine, make_session_factory
from app.queue import make_celery, publish_job
from app.settings import get_settings
from workers.job_log import job_log
from workers.job_store import JobStore
from workers.runner import StopSignals, run_claimed

PR_SET_PDEATHSIG = 1
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
    store = JobStore(make_session_factory(engine), job_id, token, outage_seconds=settings.db_outage_seconds)
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


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(main(sys.argv[1], sys.argv[2]))
