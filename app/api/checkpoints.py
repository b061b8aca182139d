"""Finding a job's checkpoints: by id, the latest, or the best (the checkpoint of the job's best epoch)."""

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from app.db.job_state import newest_checkpoint
from app.db.tables import Checkpoint, Job


def list_checkpoints(*, session: Session, job: Job) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job.id).order_by(Checkpoint.step, Checkpoint.id)
        )
    )


def find_checkpoint(*, session: Session, job: Job, which: str) -> Checkpoint | None:
    """`which` is a checkpoint id, `latest`, or `best` (falls back to the latest when the best epoch
    has no checkpoint of its own, e.g. with checkpoint_every > 1)."""
    query = select(Checkpoint).where(Checkpoint.job_id == job.id).options(undefer(Checkpoint.data))
    if which == "latest":
        return newest_checkpoint(session, job_id=job.id)
    if which == "best":
        best = (
            session.scalars(
                query.where(Checkpoint.epoch == job.best_epoch, Checkpoint.end_of_epoch).limit(1)
            ).first()
            if job.best_epoch is not None
            else None
        )
        return best or newest_checkpoint(session, job_id=job.id)
    if not which.isdigit():
        return None
    return session.scalars(query.where(Checkpoint.id == int(which))).first()
