"""Finding a job's checkpoints: by id, the latest, or the best (the checkpoint of the job's best epoch)."""

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from app.db.tables import Checkpoint, Job


class CheckpointCorrupted(RuntimeError):
    pass


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
    newest = query.order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).limit(1)
    if which == "latest":
        return session.scalars(newest).first()
    if which == "best":
        best = (
            session.scalars(
                query.where(Checkpoint.epoch == job.best_epoch, Checkpoint.end_of_epoch).limit(1)
            ).first()
            if job.best_epoch is not None
            else None
        )
        return best or session.scalars(newest).first()
    if not which.isdigit():
        return None
    return session.scalars(query.where(Checkpoint.id == int(which))).first()


def verified_bytes(checkpoint: Checkpoint) -> bytes:
    if hashlib.sha256(checkpoint.data).hexdigest() != checkpoint.sha256:
        raise CheckpointCorrupted(f"checkpoint {checkpoint.id} does not match its sha256")
    return checkpoint.data
