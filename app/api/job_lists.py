"""GET /v1/jobs: filters, sorts and keyset pages, each page one indexed walk however many jobs there are.

A sort walks the jobs that have its key in key order, then, for `duration` and `best.METRIC`, the jobs
without it, newest first. A cursor says which sort it belongs to, which of the two walks it is in, and the
last key and id it returned; the next page starts after that, so pages have neither gaps nor repeats while
keys stay put (a running job's duration and best metrics are only set once it has them, and may move it).
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    exists,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.api.schemas import JobListQuery
from app.db.tables import (
    DATASET_POSTGRESQL,
    DURATION_SECONDS_POSTGRESQL,
    OPTIMIZER_POSTGRESQL,
    Job,
    JobBestMetric,
    JobTag,
)
from models.errors import SpecError

Column = ColumnElement[Any] | InstrumentedAttribute[Any]


@dataclass(frozen=True)
class JobSort:
    key: str  # created, duration or best.METRIC
    descending: bool

    @classmethod
    def parse(cls, text: str) -> "JobSort":
        return cls(text.lstrip("+-"), text.startswith("-"))

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.key

    @property
    def metric(self) -> str | None:
        return self.key.removeprefix("best.") if self.key.startswith("best.") else None


@dataclass(frozen=True)
class Position:
    """Where a page ended: in the walk of jobs with the sort key (`ranked`) or of those without it."""

    ranked: bool
    key: Any  # the sort key's value (created: a datetime); in the second walk, created_at
    job_id: str


def encode_cursor(sort: JobSort, position: Position) -> str:
    key = position.key.isoformat() if isinstance(position.key, datetime) else position.key
    text = json.dumps([str(sort), position.ranked, key, position.job_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str, sort: JobSort) -> Position:
    def refuse(reason: str = "not a cursor this API returned") -> SpecError:
        return SpecError.single("cursor", cursor, reason)

    try:
        cursor_sort, ranked, key, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise refuse() from None
    if cursor_sort != str(sort):
        raise refuse(f"this cursor pages sort={cursor_sort}, not sort={sort}: start again without a cursor")
    try:
        if sort.key == "created" or not ranked:
            key = datetime.fromisoformat(key)
        elif isinstance(key, int | float):
            key = float(key)
        else:
            raise TypeError(key)
    except (ValueError, TypeError, OverflowError):
        raise refuse() from None
    return Position(bool(ranked), key, str(job_id))


@dataclass
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _optimizer(dialect: str) -> ColumnElement[str]:
    if dialect == "postgresql":
        return literal_column(OPTIMIZER_POSTGRESQL, String)
    return Job.spec[("optimizer", "name")].as_string()


def _dataset(dialect: str) -> ColumnElement[str]:
    """The name of a built-in, the id of an upload (kept in the spec after the upload is deleted)."""
    if dialect == "postgresql":
        return literal_column(DATASET_POSTGRESQL, String)
    return func.coalesce(Job.spec[("dataset", "name")].as_string(), Job.spec[("dataset", "id")].as_string())


def _filters(query: JobListQuery, dialect: str) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.status:
        where.append(Job.status == query.status)
    if query.arch:
        where.append(Job.arch == query.arch)
    for tag in query.tag:  # each through the (tag, job_id) index
        where.append(Job.id.in_(select(JobTag.job_id).where(JobTag.tag == tag)))
    if query.name:
        where.append(Job.name.ilike(f"%{_escape_like(query.name)}%", escape="\\"))
    if query.optimizer:  # these two in creation order through their expression indexes on PostgreSQL
        where.append(_optimizer(dialect) == query.optimizer)
    if query.dataset:
        where.append(_dataset(dialect) == query.dataset)
    if query.sweep_id:  # through the unique (sweep_id, trial_number) index
        where.append(Job.sweep_id == query.sweep_id)
    if query.created_after:
        where.append(Job.created_at >= query.created_after)
    if query.created_before:
        where.append(Job.created_at < query.created_before)
    if query.id_prefix:  # hex digits and dashes: nothing LIKE would read as a wildcard
        where.append(Job.id.like(f"{query.id_prefix.lower()}%"))
    if query.parent:
        where.append(Job.parent_job_id == query.parent.lower())
    return where


def duration_seconds(dialect: str) -> ColumnElement[float]:
    """A finished job's run time; NULL until it has both ends. PostgreSQL's form is the indexed one."""
    if dialect == "postgresql":
        return literal_column(DURATION_SECONDS_POSTGRESQL, Float)
    julian = func.julianday(Job.finished_at, type_=Float) - func.julianday(Job.started_at, type_=Float)
    return julian * 86400.0


def _after(key: Column, tiebreak: Column, at: Position, descending: bool) -> ColumnElement[bool]:
    row, bound = tuple_(key, tiebreak), tuple_(at.key, at.job_id)
    return row < bound if descending else row > bound


def _ranked(
    session: Session, base: Select[Job], sort: JobSort, owner: str, at: Position | None, limit: int
) -> list[tuple[Job, Position]]:
    """Jobs that have the sort key, in key order (ties by id, the same way)."""
    tiebreak: Column = Job.id
    key: Column
    if sort.metric is not None:
        on = and_(JobBestMetric.job_id == Job.id, JobBestMetric.name == sort.metric)
        base = base.join(JobBestMetric, on).where(JobBestMetric.owner == owner)
        key, tiebreak = JobBestMetric.value, JobBestMetric.job_id
    elif sort.key == "duration":
        key = duration_seconds(session.get_bind().dialect.name)
        base = base.where(key.is_not(None))
    else:
        key = Job.created_at
    if at is not None:
        base = base.where(_after(key, tiebreak, at, sort.descending))
    order = [key.desc(), tiebreak.desc()] if sort.descending else [key.asc(), tiebreak.asc()]
    rows = session.execute(base.add_columns(key).order_by(*order).limit(limit)).all()
    return [(job, Position(True, value, job.id)) for job, value in rows]


def _unranked(
    session: Session, base: Select[Job], sort: JobSort, at: Position | None, limit: int
) -> list[tuple[Job, Position]]:
    """Jobs without the sort key (not finished; no such metric, or not a finite number), newest first."""
    if sort.metric is not None:
        has = exists().where(JobBestMetric.job_id == Job.id, JobBestMetric.name == sort.metric)
        base = base.where(~has)
    else:
        base = base.where(duration_seconds(session.get_bind().dialect.name).is_(None))
    if at is not None:
        base = base.where(_after(Job.created_at, Job.id, at, descending=True))
    jobs = session.scalars(base.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit))
    return [(job, Position(False, job.created_at, job.id)) for job in jobs]


def list_jobs(*, session: Session, owner: str, query: JobListQuery) -> JobPage:
    """One page of the owner's jobs that pass every filter, in the query's sort."""
    sort = JobSort.parse(query.sort)
    at = decode_cursor(query.cursor, sort) if query.cursor else None
    base = select(Job).where(Job.owner == owner, *_filters(query, session.get_bind().dialect.name))
    wanted = query.limit + 1  # one more than a page says whether another follows
    found: list[tuple[Job, Position]] = []
    if at is None or at.ranked:
        found = _ranked(session, base, sort, owner, at, wanted)
    if sort.key != "created" and len(found) < wanted:
        found += _unranked(session, base, sort, None if at is None or at.ranked else at, wanted - len(found))
    page = found[: query.limit]
    more = len(found) > query.limit
    return JobPage([job for job, _ in page], encode_cursor(sort, page[-1][1]) if more else None)
