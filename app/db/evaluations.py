"""A job's evaluations and every change of their status: queued → running → succeeded | failed, each a
conditional UPDATE, so a duplicate message (or a late one after a failure was recorded) changes nothing."""

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.tables import Evaluation, Job


class EvaluationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def create_evaluation(
    session: Session, *, job: Job, kind: str, checkpoint_id: int, split: str, params: dict[str, Any]
) -> Evaluation:
    evaluation = Evaluation(
        id=str(uuid.uuid4()),
        job_id=job.id,
        kind=kind,
        status=EvaluationStatus.QUEUED,
        checkpoint_id=checkpoint_id,
        split=split,
        params=params,
        created_at=utcnow(),
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def list_evaluations(session: Session, *, job_id: str) -> list[Evaluation]:
    return list(
        session.scalars(
            select(Evaluation)
            .where(Evaluation.job_id == job_id)
            .order_by(Evaluation.created_at, Evaluation.id)
        )
    )


def start(session: Session, *, evaluation_id: str) -> bool:
    """queued → running; False when it is not queued (another delivery took it, or it ended)."""
    done = session.execute(
        update(Evaluation)
        .where(Evaluation.id == evaluation_id, Evaluation.status == EvaluationStatus.QUEUED)
        .values(status=EvaluationStatus.RUNNING, started_at=utcnow())
    )
    return done.rowcount == 1  # type: ignore[attr-defined]


def finish(
    session: Session, *, evaluation_id: str, result: dict[str, Any] | None = None, error: str | None = None
) -> bool:
    """queued or running → succeeded (with `result`) or failed (with `error`); False when already ended."""
    status = EvaluationStatus.FAILED if error is not None else EvaluationStatus.SUCCEEDED
    done = session.execute(
        update(Evaluation)
        .where(
            Evaluation.id == evaluation_id,
            Evaluation.status.in_([EvaluationStatus.QUEUED, EvaluationStatus.RUNNING]),
        )
        .values(status=status, result=result, error=error, finished_at=utcnow())
    )
    return done.rowcount == 1  # type: ignore[attr-defined]
