"""Deleting what a job or an upload stored, in the caller's transaction. The API's DELETE routes and the
retention sweep (app/core/maintenance.py) both come here; neither decides more than which rows go.

Every table with a foreign key to the job (metrics, metric blocks, log lines, checkpoints, and any added
later) is cleared by one statement of its own rather than left to ON DELETE CASCADE: PostgreSQL's
metric_block trigger then runs once, and a SQLite connection opened without `PRAGMA foreign_keys=ON`
leaves nothing behind."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, ColumnElement, Table, delete, exists, select
from sqlalchemy.orm import Session, aliased

from app.db import job_logs, job_state  # noqa: F401  (job_logs puts job_log, which names the job, on Base.metadata)
from app.db.base import Base
from app.db.job_state import TERMINAL
from app.db.tables import Dataset, IdempotencyKey, Job

_CHILD = aliased(Job)  # a job that started from the one in the statement (init_from)


def job_parts() -> list[tuple[Table, Column[str]]]:
    """Each table whose rows belong to a job, with its column naming the job (a job's samples are in its
    own row, job.latest_samples)."""
    return [
        (table, key.parent)
        for table in Base.metadata.sorted_tables
        for key in table.foreign_keys
        if key.column.table is Job.__table__
    ]


def _replays_of(owner: str, object_id: str) -> ColumnElement[bool]:
    """The owner's idempotency records whose stored response created `object_id` (a job's or a dataset's
    id: both are UUIDs, so the body's id alone says which)."""
    return (IdempotencyKey.owner == owner) & (
        IdempotencyKey.response[("body", "id")].as_string() == object_id
    )


def delete_finished_job(session: Session, *, job_id: str, owner: str) -> bool:
    """Delete a finished job with its metrics, metric blocks, log lines, samples, checkpoints and the
    idempotency records that would replay its creation. False (and the caller rolls back) when the job is
    not there or not finished: a terminal status never changes, so a job seen finished stays deletable."""
    for table, job_column in job_parts():
        session.execute(delete(table).where(job_column == job_id))
    session.execute(delete(IdempotencyKey).where(_replays_of(owner, job_id)))
    has_children = exists().where(_CHILD.parent_job_id == job_id)  # they need its checkpoint (init_from)
    gone = session.execute(delete(Job).where(Job.id == job_id, Job.status.in_(TERMINAL), ~has_children))
    return gone.rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DatasetDeletion:
    active: list[str]  # queued or running jobs using the dataset: nothing was deleted
    released: list[str]  # finished jobs that used it and now show it deleted


def delete_unused_dataset(session: Session, *, dataset_id: str, owner: str) -> DatasetDeletion:
    """Delete an upload unless a queued or running job uses it (then `active` names them, and the caller
    rolls back). Finished jobs that used it keep everything they hold and forget the dataset
    (job.dataset_id = NULL: what ON DELETE SET NULL would do, without a migration); their spec still names
    its id, so they read back as `dataset_deleted`."""
    # The write comes first: on SQLite it takes the database's write lock before the check below, so no
    # job can start using the dataset between the check and the delete (PostgreSQL's foreign key refuses
    # the delete if one does).
    released = job_state.release_dataset(session, dataset_id=dataset_id)
    active = list(session.scalars(select(Job.id).where(Job.dataset_id == dataset_id).order_by(Job.id)))
    if not active:
        session.execute(delete(IdempotencyKey).where(_replays_of(owner, dataset_id)))
        session.execute(delete(Dataset).where(Dataset.id == dataset_id))
    return DatasetDeletion(active, list(released))


def expired_jobs(session: Session, *, finished_before: datetime, limit: int) -> list[tuple[str, str]]:
    """(id, owner) of up to `limit` jobs (any owner's) that finished before `finished_before`, oldest
    first."""
    rows = session.execute(
        select(Job.id, Job.owner)
        .where(
            Job.status.in_(TERMINAL),
            # created_at ≤ finished_at: this bound lets the (status, created_at) index do the scan
            Job.created_at < finished_before,
            Job.finished_at < finished_before,
            ~exists().where(_CHILD.parent_job_id == Job.id),  # a parent stays while its children do
        )
        .order_by(Job.finished_at)
        .limit(limit)
    )
    return [(job_id, owner) for job_id, owner in rows]
