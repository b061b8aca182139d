"""Finding a job's checkpoints: by id, the latest, or the best (the checkpoint of the job's best epoch)."""

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from app.db.checkpoints import best_checkpoint_query
from app.db.job_state import newest_checkpoint
from app.db.tables import Checkpoint, Job


def list_checkpoints(*, session: Session, job: Job) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job.id).order_by(Checkpoint.step, Checkpoint.id)
        )
    )


def find_checkpoint(*, session: Session, job: Job, which: str) -> Checkpoint | None:
    """`which` is a checkpoint id, `latest` (the newest resumable), or `best` (the best epoch's weights;
    the latest when the job has no best epoch, or its best epoch's checkpoint was deleted)."""
    query = select(Checkpoint).where(Checkpoint.job_id == job.id).options(undefer(Checkpoint.data))
    if which == "latest":
        return newest_checkpoint(session, job_id=job.id)
    if which == "best":
        best_query = best_checkpoint_query(job)
        best = (
            session.scalars(best_query.options(undefer(Checkpoint.data))).first()
            if best_query is not None
            else None
        )
        return best or newest_checkpoint(session, job_id=job.id)
    if not which.isdigit() or int(which) >= 2**31:  # ids are 32-bit integers: no larger one exists
        return None
    return session.scalars(query.where(Checkpoint.id == int(which))).first()
