"""What a run leaves in the database, written directly: the storage tests need many finished jobs with
checkpoints, metrics and log lines, and training each for real would take minutes. The rows are the ones
the worker writes (the worker's own writes are covered by the end-to-end tests)."""

import hashlib
import os
import uuid
from datetime import timedelta

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.job_logs import JobLog
from app.db.tables import Checkpoint, Job, Metric

METRIC_NAMES = ("train_loss", "lr")


def finished_job(
    session: Session,
    owner: str,
    *,
    status: str = "succeeded",
    finished_days_ago: float = 0.0,
    dataset_id: str | None = None,
    best_epoch: int | None = None,
) -> str:
    """A job row as a finished run leaves it (a queued or running `status` leaves it unfinished)."""
    finished = utcnow() - timedelta(days=finished_days_ago)
    dataset = {"id": dataset_id} if dataset_id else {"name": "moons"}
    job_id = str(uuid.uuid4())
    session.add(
        Job(
            id=job_id,
            owner=owner,
            arch="mlp",
            spec={"dataset": dataset, "model": {"arch": "mlp"}, "training": {"epochs": 5}},
            dataset_id=dataset_id,
            queue="cpu",
            num_parameters=100,
            status=status,
            version=2,
            attempt=1,
            max_restarts=3,
            cancel_requested=False,
            epoch=5,
            step=50,
            total_epochs=5,
            steps_per_epoch=10,
            latest_metrics={},
            best_metrics={},
            best_epoch=best_epoch,
            best_test_metrics={},
            created_at=finished - timedelta(minutes=5),
            started_at=finished - timedelta(minutes=4) if status != "queued" else None,
            finished_at=finished if status in ("succeeded", "failed", "cancelled") else None,
        )
    )
    session.flush()
    return job_id


def add_checkpoints(session: Session, job_id: str, *, epochs: int, nbytes: int) -> list[int]:
    """One end-of-epoch checkpoint per epoch, `nbytes` of random (incompressible) bytes each; their ids."""
    ids = []
    for epoch in range(1, epochs + 1):
        data = os.urandom(nbytes)
        row = Checkpoint(
            job_id=job_id,
            epoch=epoch,
            step=epoch * 10,
            end_of_epoch=True,
            metrics={},
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        ids.append(row.id)
    return ids


def add_metrics(session: Session, job_id: str, *, steps: int) -> int:
    """A step series per METRIC_NAMES over `steps` steps; the rows written."""
    rows = [
        {
            "job_id": job_id,
            "name": name,
            "step": step,
            "epoch": 1 + step // 10,
            "value": 1 / step,
            "time": utcnow(),
        }
        for name in METRIC_NAMES
        for step in range(1, steps + 1)
    ]
    session.execute(insert(Metric), rows)
    return len(rows)


def add_logs(session: Session, job_id: str, *, lines: int) -> int:
    rows = [
        {"job_id": job_id, "attempt": 1, "time": utcnow(), "level": "INFO", "logger": "nnforge.worker",
         "message": f"job {job_id} epoch {i}/5"}
        for i in range(lines)
    ]  # fmt: skip
    session.execute(insert(JobLog), rows)
    return len(rows)
