"""Finding a job's checkpoints: by id, the latest, or the best (the checkpoint of the job's best epoch)."""

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from app.db.checkpoints import NEWEST_FIRST, best_checkpoint_query
from app.db.job_state import newest_checkpoint
from app.db.tables import Checkpoint, Job


def list_checkpoints(*, session: Session, job: Job) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job.id).order_by(Checkpoint.step, Checkpoint.id)
        )
    )


def find_checkpoint(*, session: Session, job: Job, which: str, with_data: bool = True) -> Checkpoint | None:
    """`which` is a checkpoint id, `latest` (the newest resumable), or `best` (the best epoch's weights;
    the latest when the job has no best epoch, or its best epoch's checkpoint was deleted). Without
    `with_data` the bytes load only when touched (predict needs them once per checkpoint, to export it)."""
    data = (undefer(Checkpoint.data),) if with_data else ()
    query = select(Checkpoint).where(Checkpoint.job_id == job.id).options(*data)
    if which == "latest":
        return _newest(session, job, with_data)
    if which == "best":
        best_query = best_checkpoint_query(job)
        best = session.scalars(best_query.options(*data)).first() if best_query is not None else None
        return best or _newest(session, job, with_data)
    # ASCII digits only (str.isdigit takes "²", which int() refuses); ids are 32-bit: no larger one exists.
    if not (which.isascii() and which.isdigit()) or int(which) >= 2**31:
        return None
    return session.scalars(query.where(Checkpoint.id == int(which))).first()


def _newest(session: Session, job: Job, with_data: bool) -> Checkpoint | None:
    if with_data:
        return newest_checkpoint(session, job_id=job.id)
    query = select(Checkpoint).where(Checkpoint.job_id == job.id, Checkpoint.resumable)
    return session.scalars(query.order_by(*NEWEST_FIRST).limit(1)).first()
