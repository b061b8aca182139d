"""The worker entry point: `celery -A workers.celery_app worker -Q cpu,any -c 1`.

Its main process imports neither torch nor CUDA; each job trains in a fresh process (workers.trainer).
The main process also runs the reconciler and, on a warm shutdown, asks running trainings to hand back.
"""

import logging
import os
import signal
from typing import Any

from celery import Celery, Task
from celery.signals import celeryd_after_setup, worker_ready, worker_shutting_down

from app.core.queue import DRIVE_SWEEP_TASK, RUN_EVALUATION_TASK, RUN_JOB_TASK, make_celery
from app.core.settings import get_settings
from app.db.engine import make_engine, make_session_factory
from workers.evaluations import run_in_process
from workers.reconciler import Reconciler, ReconcilerThread
from workers.supervisor import remove_stale_registries, supervise, trainer_registry
from workers.sweep_driver import drive_and_send, drive_due

celery_app: Celery = make_celery(get_settings())
log = logging.getLogger("nnforge.worker")


@celery_app.task(name=RUN_JOB_TASK, bind=True)
def run_job(self: Task, job_id: str, queue: str | None = None) -> str:
    """A wake-up for `queue`: its fairest queued job starts, which need not be `job_id` (the job the message
    was sent for; app/db/job_state.py says why every message still starts exactly one job)."""
    if (self.request.delivery_info or {}).get("redelivered"):
        log.info("job %s: message redelivered by the broker", job_id)
    outcome = supervise(job_id, queue, get_settings())
    drive_due(get_settings(), celery_app)  # a sweep's trial that ended makes room for its next one
    return outcome


@celery_app.task(name=DRIVE_SWEEP_TASK)
def drive_sweep(sweep_id: str) -> int:
    """One pass of a sweep's driver (sent at POST /v1/sweeps and by the reconciler); returns the trials it
    queued."""
    return drive_and_send(sweep_id, get_settings(), celery_app)


@celery_app.task(name=RUN_EVALUATION_TASK)
def run_evaluation(evaluation_id: str) -> str:
    """An evaluation of a job's checkpoint, in a process of its own (workers/evaluations.py)."""
    return run_in_process(evaluation_id, get_settings())


@celeryd_after_setup.connect
def remove_registries_of_gone_workers(**_: Any) -> None:
    """Once logging is set up, before the pool starts: a warm shutdown signals the pids in this worker's
    registry, so none may be left from an earlier life."""
    for folder in remove_stale_registries(get_settings(), os.getpid()):
        log.info("removed %s: the worker that wrote it is gone", folder)


@worker_ready.connect
def start_reconciler(**_: Any) -> None:
    settings = get_settings()
    factory = make_session_factory(make_engine(settings.resolved_database_url))
    ReconcilerThread(Reconciler(factory, celery_app, settings), settings.reconcile_seconds).start()


@worker_shutting_down.connect
def hand_back_running_jobs(**_: Any) -> None:
    """SIGTERM each training process of this worker: it checkpoints and returns its job to the queue."""
    registry = trainer_registry(get_settings(), os.getpid())
    for pid_file in registry.glob("*") if registry.exists() else []:
        try:
            os.kill(int(pid_file.name), signal.SIGTERM)
            log.info("asked training process %s to hand its job back", pid_file.name)
        except (ProcessLookupError, ValueError):
            pid_file.unlink(missing_ok=True)
