"""The runner's side of a job's database: its state changes (app.db.job_state, fenced by the lease token),
its metric rows and its checkpoints. Every call rides out database outages: it is retried with backoff for
up to `outage_seconds`."""

import functools
import hashlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker, undefer

from app.db import job_state
from app.db.base import utcnow
from app.db.checkpoint_retention import ONLY_THE_NEWEST, RetentionPolicy, prune
from app.db.engine import transaction
from app.db.job_state import ErrorKind, JobStatus, Settled
from app.db.no_space import is_no_space
from app.db.tables import Checkpoint, Dataset, Job, Metric
from app.db.usage import owner_over_storage

log = logging.getLogger("nnforge.worker")
P = ParamSpec("P")
R = TypeVar("R")
MAX_BACKOFF_SECONDS = 2.0
COPY_METRICS = "COPY metric (job_id, name, step, epoch, value, time) FROM STDIN"


class NoSpace(RuntimeError):
    """The database's disk stayed full for the whole outage allowance: the job fails as no_space."""


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    owner: str
    spec: dict[str, Any]
    dataset_id: str | None
    attempt: int
    max_restarts: int
    queue: str
    request_id: str | None  # of the POST that queued it


@dataclass(frozen=True)
class MetricRow:
    name: str
    step: int
    epoch: int
    value: float


def _retried(call: Callable[[], R], *, outage_seconds: float, what: str) -> R:
    """`call()`, again while the database is unreachable (or, for SQLite, locked) or its disk is full, for
    `outage_seconds`: a job waits for space as it waits out an outage, and goes on when space is freed."""
    deadline, delay = time.monotonic() + outage_seconds, 0.2
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError) as error:
            full = is_no_space(error)
            if time.monotonic() > deadline:
                if full:
                    raise NoSpace(
                        f"no space left on the database's disk for {outage_seconds:g} s "
                        f"(DB_OUTAGE_SECONDS); free space and submit the job again"
                    ) from error
                raise
            reason = "no space left on the database's disk" if full else "database unreachable"
            log.warning("%s: %s (%s); retrying in %.1f s", what, reason, type(error.orig).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


def survives_outages(method: Callable[P, R]) -> Callable[P, R]:
    """Retry a JobStore method while the database is unreachable (or, for SQLite, locked)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store: JobStore = args[0]  # type: ignore[assignment]
        return _retried(
            lambda: method(*args, **kwargs), outage_seconds=store.outage_seconds, what=f"job {store.job_id}"
        )

    return wrapper


def claim_next(
    factory: sessionmaker[Session],
    *,
    queue: str,
    token: str,
    max_running_per_owner: int,
    outage_seconds: float = 600.0,
) -> ClaimedJob | None:
    """Claim the fairest queued job of `queue` with the lease `token` (app.db.job_state.claim); None when
    none can start. Retried through outages; a retry after a commit whose answer was lost finds the job
    this token already holds, so one claim never takes two jobs."""

    def claim() -> ClaimedJob | None:
        with transaction(factory) as session:
            job = job_state.leased_by(session, token=token) or job_state.claim(
                session,
                queue=queue,
                token=token,
                max_running_per_owner=max_running_per_owner,
                host=socket.gethostname(),  # this training process's machine: the job's worker_host
            )
            if job is None:
                return None
            return ClaimedJob(
                job.id,
                job.owner,
                job.spec,
                job.dataset_id,
                job.attempt,
                job.max_restarts,
                job.queue,
                job.request_id,
            )

    return _retried(claim, outage_seconds=outage_seconds, what=f"queue {queue}")


def job_leased_by(factory: sessionmaker[Session], token: str, *, outage_seconds: float = 600.0) -> str | None:
    """The id of the running job whose lease is `token` (what an attempt claimed), if it still holds."""

    def read() -> str | None:
        with factory() as session:
            job = job_state.leased_by(session, token=token)
            return job.id if job is not None else None

    return _retried(read, outage_seconds=outage_seconds, what=f"lease {token}")


class JobStore:
    """One attempt's view of its job: `token` is the lease it took with `claim_next`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        token: str,
        *,
        outage_seconds: float = 600.0,
        storage_limit: int | None = None,
        owner: str | None = None,
    ) -> None:
        self.factory, self.job_id, self.token, self.outage_seconds = factory, job_id, token, outage_seconds
        self.storage_limit = storage_limit  # MAX_STORAGE_BYTES_PER_OWNER
        self.owner = owner  # whose storage the limit counts

    @survives_outages
    def dataset_bytes(self, dataset_id: str) -> tuple[bytes, str, str, str | None]:
        with self.factory() as session:
            row = session.get_one(Dataset, dataset_id)
            return row.data, row.filename, row.format, row.label_column

    @survives_outages
    def latest_checkpoint(self) -> bytes | None:
        """The newest checkpoint's bytes, verified against its sha256."""
        with self.factory() as session:
            row = job_state.newest_checkpoint(session, job_id=self.job_id)
            return job_state.verified_bytes(row) if row is not None else None

    @survives_outages
    def parent_checkpoint(self) -> bytes | None:
        """The bytes of the checkpoint the job starts from (init_from), verified; None without a parent. The
        checkpoint is protected while the job exists (app/db/checkpoints.py)."""
        with self.factory() as session:
            checkpoint_id = session.scalar(select(Job.parent_checkpoint_id).where(Job.id == self.job_id))
            if checkpoint_id is None:
                return None
            row = session.get_one(Checkpoint, checkpoint_id, options=[undefer(Checkpoint.data)])
            return job_state.verified_bytes(row)

    @survives_outages
    def forget_metrics_after(self, step: int) -> None:
        """A resumed attempt rewrites the steps after its checkpoint: drop what the lost attempt wrote."""
        with transaction(self.factory) as session:
            job_state.assert_lease(session, job_id=self.job_id, token=self.token)
            session.execute(delete(Metric).where(Metric.job_id == self.job_id, Metric.step > step))

    @survives_outages
    def touch(self) -> bool:
        """Renew the lease; returns whether cancel is requested. Raises LeaseLost when it is gone."""
        with transaction(self.factory) as session:
            return job_state.renew_lease(session, job_id=self.job_id, token=self.token)

    @survives_outages
    def write_progress(self, *, metrics: list[MetricRow], progress: dict[str, Any]) -> None:
        """Buffered metric rows and the job's progress, in one fenced transaction."""
        now = utcnow()
        with transaction(self.factory) as session:
            job_state.record_progress(session, job_id=self.job_id, token=self.token, progress=progress)
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
        self,
        *,
        data: bytes,
        epoch: int,
        step: int,
        end_of_epoch: bool,
        resumable: bool,
        metrics: dict[str, float],
        policy: RetentionPolicy,
    ) -> bool:
        """Store a checkpoint and, in the same transaction, drop those the retention policy drops now; True
        when the owner is at its storage limit, and only the newest checkpoint is kept."""
        with transaction(self.factory) as session:
            job_state.assert_lease(session, job_id=self.job_id, token=self.token)
            session.add(
                Checkpoint(
                    job_id=self.job_id,
                    epoch=epoch,
                    step=step,
                    end_of_epoch=end_of_epoch,
                    resumable=resumable,
                    metrics=metrics,
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    data=data,
                    created_at=utcnow(),
                )
            )
            session.flush()
            over = self.owner is not None and owner_over_storage(
                session, owner=self.owner, limit=self.storage_limit
            )
            prune(session, self.job_id, ONLY_THE_NEWEST if over else policy)
            return over

    @survives_outages
    def finish(
        self, *, status: JobStatus, error_type: ErrorKind | None = None, error_message: str | None = None
    ) -> bool:
        """Record a terminal status; False when this runner no longer owns the job."""
        with transaction(self.factory) as session:
            return job_state.finish(
                session,
                job_id=self.job_id,
                token=self.token,
                status=status,
                error_type=error_type,
                error_message=error_message,
            )

    @survives_outages
    def hand_back(self) -> str | None:
        """Back to the queue (a warm shutdown); the job's queue, or None when the lease is gone."""
        with transaction(self.factory) as session:
            return job_state.hand_back(session, job_id=self.job_id, token=self.token)

    @survives_outages
    def settle_lost_run(self, message: str) -> Settled | None:
        """This attempt's training process died: queued again while attempts are left, else failed."""
        with transaction(self.factory) as session:
            return job_state.settle_lost_run(session, job_id=self.job_id, token=self.token, message=message)
