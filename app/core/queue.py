"""The Celery application as both sides configure it. The API only sends task names through it;
it never imports worker code or torch. Settings follow ../shared/notes/celery.md (measured there)."""

from typing import Any

from celery import Celery

from app.core.request_id import connect_celery_signals
from app.core.settings import Settings

RUN_JOB_TASK = "nnforge.run_job"
RUN_EVALUATION_TASK = "nnforge.run_evaluation"  # an evaluation of a checkpoint (workers/evaluations.py)
DRIVE_SWEEP_TASK = "nnforge.drive_sweep"  # one pass of a sweep's driver (workers/sweep_driver.py)
QUEUE_FOR_DEVICE = {"cpu": "cpu", "cuda": "gpu", "auto": "any"}  # `any`: whichever worker is free
QUEUES_FOR_WORKER = {"cpu": ["cpu", "any"], "gpu": ["gpu", "any"]}
BROKER_POLL_SECONDS = 0.1  # filesystem broker: ~56 ms median dispatch at 0.1 s


def make_celery(settings: Settings) -> Celery:
    app = Celery("nnforge")
    app.conf.update(_config(settings))
    connect_celery_signals()  # both sides build their Celery here: the request id rides every message
    return app


def _config(settings: Settings) -> dict[str, Any]:
    common: dict[str, Any] = {
        "task_acks_late": True,  # the message stays unacked while the job runs
        "worker_prefetch_multiplier": 1,  # with acks_late, a worker holds only the job it runs
        "task_reject_on_worker_lost": False,  # the database, not a requeue loop, recovers crashed jobs
        "task_ignore_result": True,  # status, metrics and checkpoints live in our database
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_default_queue": "any",
        "worker_hijack_root_logger": False,
    }
    if settings.redis_url:
        return common | {
            "broker_url": settings.redis_url,
            "broker_transport_options": {
                # Longer than the longest allowed job, so Redis does not redeliver a running job;
                # if it ever does, the duplicate finds the job claimed and exits.
                "visibility_timeout": settings.broker_visibility_seconds or settings.max_job_seconds + 3600,
                "unacked_restore_interval": 10,  # sweep for expired unacked messages every ~10 s, not ~100 s
                "unacked_restore_throttle": 1,
                "socket_keepalive": True,
                "socket_timeout": 5,
                "socket_connect_timeout": 2,
            },
        }
    folder = settings.broker_folder
    return common | {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "polling_interval": BROKER_POLL_SECONDS,
        },
    }


def ensure_broker_folders(settings: Settings) -> None:
    """The filesystem transport needs its folders before a worker starts."""
    if not settings.redis_url:
        for name in ("queue", "control"):
            (settings.broker_folder / name).mkdir(parents=True, exist_ok=True)


def publish_job(celery: Celery, job_id: str, queue: str) -> None:
    """Wake a worker for a job just queued: the worker starts the fairest queued job of `queue`, which need
    not be this one (app/db/job_state.py). Duplicates are harmless: a claim takes only queued jobs."""
    celery.send_task(RUN_JOB_TASK, args=[job_id], kwargs={"queue": queue}, queue=queue)


def publish_evaluation(celery: Celery, evaluation_id: str, queue: str) -> None:
    """Run an evaluation on a worker of its job's queue. A duplicate finds it no longer queued and exits."""
    celery.send_task(RUN_EVALUATION_TASK, args=[evaluation_id], queue=queue)


def publish_sweep(celery: Celery, sweep_id: str, queue: str) -> None:
    """Ask a worker of the sweep's queue for a pass of its driver. Duplicates are harmless: passes are
    serialised and idempotent."""
    celery.send_task(DRIVE_SWEEP_TASK, args=[sweep_id], queue=queue)
