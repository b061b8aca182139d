"""The worker's reads and writes of job state. Every write after the claim is fenced by the lease token
(unique per attempt), so a runner that lost its job can no longer change it. Writes ride out database
outages: they are retried with backoff for up to `outage_seconds`."""

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from app.db.base import utcnow
from app.db.engine import transaction
from app.db.tables import Checkpoint, Dataset, Job, Metric

log = logging.getLogger("nnforge.worker")
P = ParamSpec("P")
R = TypeVar("R")
MAX_BACKOFF_SECONDS = 2.0
COPY_METRICS = "COPY metric (job_id, name, step, epoch, value, time) FROM STDIN"


class LeaseLost(RuntimeError):
    """Another runner owns the job now; this one must stop without writing."""


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    spec: dict[str, Any]
    dataset_id: str | None
    attempt: int
    max_restarts: int
    queue: str


@dataclass(frozen=True)
class MetricRow:
    name: str
    step: int
    epoch: int
    value: float


def survives_outages(method: Callable[P, R]) -> Callable[P, R]:
    """Retry a JobStore method while the database is unreachable (or, for SQLite, locked)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store: JobStore = args[0]  # type: ignore[assignment]
        deadline, delay = time.monotonic() + store.outage_seconds, 0.2
        while True:
            try:
                return method(*args, **kwargs)
            except (OperationalError, InterfaceError) as error:
                if time.monotonic() > deadline:
                    raise
                log.warning(
                    "job %s: database unreachable (%s); retrying in %.1f s",
                    store.job_id,
                    type(error.orig).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    return wrapper


class JobStore:
    def __init__(
        self, factory: sessionmaker[Session], job_id: str, token: str, *, outage_seconds: float = 600.0
    ) -> None:
        self.factory, self.job_id, self.token, self.outage_seconds = factory, job_id, token, outage_seconds

    @survives_outages
    def claim(self, *, max_running_per_owner: int) -> ClaimedJob | None:
        """Take a queued job (a conditional UPDATE); None when it is not queued (a duplicate delivery) or
        its owner already runs `max_running_per_owner` jobs (the reconciler wakes it again later)."""
        now = utcnow()
        other = aliased(Job)
        running = (
            select(func.count())
            .select_from(other)
            .where(other.owner == Job.owner, other.status == "running")
            .scalar_subquery()
        )
        with transaction(self.factory) as session:
            taken = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.status == "queued", running < max_running_per_owner)
                .values(
                    status="running",
                    attempt=Job.attempt + 1,
                    version=Job.version + 1,
                    lease_owner=self.token,
                    heartbeat_at=now,
                    started_at=now,
                )
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            job = session.get_one(Job, self.job_id)
            return ClaimedJob(job.id, job.spec, job.dataset_id, job.attempt, job.max_restarts, job.queue)

    @survives_outages
    def dataset_bytes(self, dataset_id: str) -> tuple[bytes, str, str, str | None]:
        with self.factory() as session:
            row = session.get_one(Dataset, dataset_id)
            return row.data, row.filename, row.format, row.label_column

    @survives_outages
    def latest_checkpoint(self) -> bytes | None:
        """The newest checkpoint's bytes, verified against its sha256."""
        with self.factory() as session:
            row = session.scalars(
                select(Checkpoint)
                .where(Checkpoint.job_id == self.job_id)
                .order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            if hashlib.sha256(row.data).hexdigest() != row.sha256:
                raise RuntimeError(f"checkpoint {row.id} of job {self.job_id} fails its sha256 check")
            return row.data

    @survives_outages
    def forget_metrics_after(self, step: int) -> None:
        """A resumed attempt rewrites the steps after its checkpoint: drop what the lost attempt wrote."""
        with transaction(self.factory) as session:
            self._assert_owner(session)
            session.execute(delete(Metric).where(Metric.job_id == self.job_id, Metric.step > step))

    @survives_outages
    def touch(self) -> bool:
        """Renew the lease; returns whether cancel is requested. Raises LeaseLost when it is gone."""
        with transaction(self.factory) as session:
            owned = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.lease_owner == self.token, Job.status == "running")
                .values(heartbeat_at=utcnow())
                .returning(Job.cancel_requested)
            ).first()
            if owned is None:
                raise LeaseLost(self.job_id)
            return bool(owned[0])

    @survives_outages
    def write_progress(self, *, metrics: list[MetricRow], progress: dict[str, Any]) -> None:
        """Buffered metric rows and the job's progress, in one fenced transaction."""
        now = utcnow()
        with transaction(self.factory) as session:
            owned = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.lease_owner == self.token, Job.status == "running")
                .values(heartbeat_at=now, **progress)
            )
            if owned.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(self.job_id)
            if metrics and session.bind is not None and session.bind.dialect.name == "postgresql":
                # COPY, in the same transaction: a small network writes ~3,000 rows a second, and COPY costs
                # a sixth of the client CPU of an executemany INSERT and half the server's.
                import psycopg

                raw = cast("psycopg.Connection[Any]", session.connection().connection.dbapi_connection)
                try:
                    with raw.cursor() as cursor, cursor.copy(COPY_METRICS) as copy:
                        for m in metrics:
                            copy.write_row((self.job_id, m.name, m.step, m.epoch, m.value, now))
                except psycopg.OperationalError as error:  # as SQLAlchemy raises it, so that it is retried
                    raise OperationalError(COPY_METRICS, None, error) from error
            elif metrics:
                session.execute(
                    insert(Metric),
                    [
                        {
                            "job_id": self.job_id,
                            "name": m.name,
                            "step": m.step,
                            "epoch": m.epoch,
                            "value": m.value,
                            "time": now,
                        }
                        for m in metrics
                    ],
                )

    @survives_outages
    def save_checkpoint(
        self, *, data: bytes, epoch: int, step: int, end_of_epoch: bool, metrics: dict[str, float]
    ) -> None:
        with transaction(self.factory) as session:
            self._assert_owner(session)
            session.add(
                Checkpoint(
                    job_id=self.job_id,
                    epoch=epoch,
                    step=step,
                    end_of_epoch=end_of_epoch,
                    metrics=metrics,
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    data=data,
                    created_at=utcnow(),
                )
            )

    @survives_outages
    def finish(self, *, status: str, error_type: str | None = None, error_message: str | None = None) -> bool:
        """Record a terminal status; False when this runner no longer owns the job."""
        with transaction(self.factory) as session:
            done = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.lease_owner == self.token, Job.status == "running")
                .values(
                    status=status,
                    version=Job.version + 1,
                    finished_at=utcnow(),
                    error_type=error_type,
                    error_message=error_message,
                    lease_owner=None,
                )
            )
            return done.rowcount == 1  # type: ignore[attr-defined]

    @survives_outages
    def release(self, *, error_type: str | None = None, error_message: str | None = None) -> bool:
        """Hand the job back to the queue (shutdown, or a retryable failure); the next attempt resumes it."""
        with transaction(self.factory) as session:
            done = session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.lease_owner == self.token, Job.status == "running")
                .values(
                    status="queued",
                    version=Job.version + 1,
                    lease_owner=None,
                    error_type=error_type,
                    error_message=error_message,
                )
            )
            return done.rowcount == 1  # type: ignore[attr-defined]

    def _assert_owner(self, session: Session) -> None:
        owner = session.scalar(select(Job.lease_owner).where(Job.id == self.job_id).with_for_update())
        if owner != self.token:
            raise LeaseLost(self.job_id)
