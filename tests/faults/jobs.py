"""Submitting and observing jobs straight through the database and the API's own functions."""

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.api.jobs import create_job
from app.api.schemas import JobCreate
from app.core.queue import make_celery, publish_job
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.tables import Checkpoint, Job, Metric


def session_factory(settings: Settings) -> sessionmaker[Session]:
    return make_session_factory(make_engine(settings.resolved_database_url))


def submit(settings: Settings, spec: dict, *, max_restarts: int = 3) -> str:
    factory = session_factory(settings)
    with factory() as session:
        job = create_job(
            session=session,
            job_in=JobCreate.model_validate(spec),
            owner="local",
            limits=settings.model_copy(update={"max_restarts": max_restarts}),
        )
        session.commit()
        job_id, queue = job.id, job.queue
    publish_job(make_celery(settings), job_id, queue)
    return job_id


def job_row(factory: sessionmaker[Session], job_id: str) -> Job:
    with factory() as session:
        return session.get_one(Job, job_id)


def steps_of(factory: sessionmaker[Session], job_id: str, name: str = "loss") -> list[int]:
    with factory() as session:
        return list(
            session.scalars(
                select(Metric.step).where(Metric.job_id == job_id, Metric.name == name).order_by(Metric.step)
            )
        )


def latest_checkpoint_bytes(factory: sessionmaker[Session], job_id: str) -> bytes:
    with factory() as session:
        row = session.scalars(
            select(Checkpoint)
            .where(Checkpoint.job_id == job_id)
            .order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
        ).first()
        assert row is not None
        return row.data


def trainer_pids(job_id: str) -> list[int]:
    """Training processes of a job, found by their command line."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"workers.trainer" in command and job_id.encode() in command:
            pids.append(int(proc.name))
    return [pid for pid in pids if pid != os.getpid()]
