"""What the Celery task does: start the job's training process, wait for it, and record the outcome
when the process could not (it crashed, was killed, or ran past the time limit)."""

import logging
import os
import signal
import subprocess
import sys
import uuid

from sqlalchemy.pool import NullPool

from app.db.engine import make_engine, make_session_factory
from app.settings import Settings
from workers.job_store import JobStore

log = logging.getLogger("nnforge.worker")
KILL_GRACE_SECONDS = 10


def supervise(job_id: str, settings: Settings) -> int | None:
    """Run the job in a fresh process; returns its exit code (None when it was killed for time)."""
    token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen([sys.executable, "-m", "workers.trainer", job_id, token],
                               start_new_session=True)  # its own process group, so a kill takes it all
    try:
        code = process.wait(timeout=settings.max_job_seconds)
    except subprocess.TimeoutExpired:
        _stop(process)
        _record_failure(settings, job_id, token, "timeout",
                        f"the job ran past the limit of {settings.max_job_seconds} s")
        return None
    if code != 0:
        _record_failure(settings, job_id, token, "worker_lost",
                        f"the training process ended with exit code {code}")
    return code


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _record_failure(settings: Settings, job_id: str, token: str, kind: str, message: str) -> None:
    engine = make_engine(settings.resolved_database_url, poolclass=NullPool)
    try:
        if JobStore(make_session_factory(engine), job_id, token).finish(
                status="failed", error_type=kind, error_message=message):
            log.error("job %s failed: %s", job_id, message)
    finally:
        engine.dispose()
