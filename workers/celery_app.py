"""The worker entry point: `celery -A workers.celery_app worker -Q cpu,any -c 1`.

Its main process imports neither torch nor CUDA; each job trains in a fresh process (workers.trainer).
"""

from celery import Celery

from app.queue import RUN_JOB_TASK, make_celery
from app.settings import get_settings
from workers.supervisor import supervise

celery_app: Celery = make_celery(get_settings())


@celery_app.task(name=RUN_JOB_TASK)
def run_job(job_id: str) -> None:
    supervise(job_id, get_settings())
