"""A job's evaluations: the request checked against the job (a checkpoint to evaluate, a kind that applies to
its network, a split that holds samples), stored as queued; reads of one and of all."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.jobs import JobConflict, dataset_info_for
from app.api.problems import NotFound
from app.db import evaluations
from app.db.checkpoints import NEWEST_FIRST, best_checkpoint_query
from app.db.tables import Checkpoint, Evaluation, Job
from models.errors import SpecError
from models.evaluate.params import EvaluationKind, Split, applicable
from models.specs import JobSpec
from models.splits import split_sizes


class EvaluationPublic(BaseModel):
    id: str
    job_id: str
    kind: EvaluationKind
    status: evaluations.EvaluationStatus
    checkpoint_id: int
    split: Split
    params: dict[str, Any]
    result: dict[str, Any] | None  # the kind's figures once succeeded (README: Evaluating a model)
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EvaluationsPublic(BaseModel):
    items: list[EvaluationPublic]


def create_evaluation(
    *, session: Session, job: Job, owner: str, kind: str, checkpoint: str, split: str, params: dict[str, Any]
) -> Evaluation:
    spec = JobSpec.model_validate(job.spec)
    info, _ = dataset_info_for(session=session, spec=spec, owner=owner)
    reason = applicable(kind, task=info.task, generative=spec.model.generative)
    if reason is not None:
        raise SpecError.single("kind", kind, f"{reason}; job {job.id} trains a {info.task} {spec.model.arch}")
    training = spec.training
    if split_sizes(info.num_samples, training.validation_fraction, training.test_fraction)[split] == 0:
        raise SpecError.single("split", split, f"job {job.id} has no {split} samples (its fractions)")
    checkpoint_id = _checkpoint_id(session, job, checkpoint)
    if checkpoint_id is None:
        raise JobConflict(f"job {job.id} has no checkpoint {checkpoint!r} to evaluate")
    return evaluations.create_evaluation(
        session, job=job, kind=kind, checkpoint_id=checkpoint_id, split=split, params=params
    )


def _checkpoint_id(session: Session, job: Job, which: str) -> int | None:
    """`best` (the best epoch's; the newest without one, as GET …/checkpoints/best), `latest`, or an id."""
    ids = select(Checkpoint.id).where(Checkpoint.job_id == job.id)
    if which.isdigit():
        return session.scalar(ids.where(Checkpoint.id == int(which)))
    best = best_checkpoint_query(job) if which == "best" else None
    found = session.scalar(best.with_only_columns(Checkpoint.id)) if best is not None else None
    return found or session.scalar(ids.where(Checkpoint.resumable).order_by(*NEWEST_FIRST).limit(1))


def get_evaluation(*, session: Session, job: Job, evaluation_id: str) -> Evaluation:
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None or evaluation.job_id != job.id:
        raise NotFound("evaluation", evaluation_id)
    return evaluation


def to_public(evaluation: Evaluation) -> EvaluationPublic:
    return EvaluationPublic.model_validate(evaluation, from_attributes=True)
