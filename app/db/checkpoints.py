"""Which of a job's checkpoints matter: the best epoch's (what `checkpoints/best` downloads) and the
protected ones, which nothing may delete (DELETE …/checkpoints/{id}, a retention policy in the worker)."""

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.db.tables import Checkpoint, Job

# newest first, as app.db.job_state.newest_checkpoint (the checkpoint a resume starts from) orders them
NEWEST_FIRST = (Checkpoint.step.desc(), Checkpoint.id.desc())


def best_checkpoint_query(job: Job) -> Select[Checkpoint] | None:
    """The checkpoint written at the end of the job's best epoch (the newest, should two attempts both have
    written it); None while the job has no best epoch."""
    if job.best_epoch is None:
        return None
    return (
        select(Checkpoint)
        .where(Checkpoint.job_id == job.id, Checkpoint.epoch == job.best_epoch, Checkpoint.end_of_epoch)
        .order_by(Checkpoint.id.desc())
        .limit(1)
    )


def started_from(session: Session, job_id: str) -> set[int]:
    """The job's checkpoints that other jobs started from (their init_from): kept while those jobs exist."""
    query = select(Job.parent_checkpoint_id).where(Job.parent_job_id == job_id)
    return {checkpoint_id for checkpoint_id in session.scalars(query) if checkpoint_id is not None}


def protected_checkpoint_ids(session: Session, job: Job) -> frozenset[int]:
    """The checkpoints a job must keep: its newest (what a resume, and `checkpoints/latest`, needs), its
    best epoch's (what `checkpoints/best` downloads) and those its children started from. Empty for a job
    without checkpoints. Read `job` fresh (or lock its row) when the answer decides a deletion: the first
    two move while the job runs."""
    newest = session.scalar(
        select(Checkpoint.id)
        .where(Checkpoint.job_id == job.id, Checkpoint.resumable)
        .order_by(*NEWEST_FIRST)
        .limit(1)
    )
    best_query = best_checkpoint_query(job)
    best = session.scalar(best_query.with_only_columns(Checkpoint.id)) if best_query is not None else None
    return frozenset(i for i in (newest, best) if i is not None) | started_from(session, job.id)
