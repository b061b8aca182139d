"""The worker's reads and writes of job state. Every write after the claim is fenced by the lease owner,
so a runner that lost its job can no longer change it."""

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.engine import transaction
from app.db.tables import Checkpoint, Dataset, Job, Metric


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    spec: dict[str, Any]
    dataset_id: str | None
    attempt: int


@dataclass(frozen=True)
class MetricRow:
    name: str
    step: int
    epoch: int
    value: float


class JobStore:
    def __init__(self, factory: sessionmaker[Session], job_id: str, owner_token: str) -> None:
        self.factory, self.job_id, self.token = factory, job_id, owner_token

    def claim(self) -> ClaimedJob | None:
        """Take a queued job (a conditional UPDATE); None when it is not queued (a duplicate delivery)."""
        now = utcnow()
        with transaction(self.factory) as session:
            taken = session.execute(
                update(Job).where(Job.id == self.job_id, Job.status == "queued").values(
                    status="running", attempt=Job.attempt + 1, version=Job.version + 1, lease_owner=self.token,
                    heartbeat_at=now, started_at=now, cancel_requested=False))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            job = session.get_one(Job, self.job_id)
            return ClaimedJob(job.id, job.spec, job.dataset_id, job.attempt)

    def dataset_bytes(self, dataset_id: str) -> tuple[bytes, str, str, str | None]:
        with self.factory() as session:
            row = session.get_one(Dataset, dataset_id)
            return row.data, row.filename, row.format, row.label_column

    def latest_checkpoint(self) -> bytes | None:
        """The newest checkpoint's bytes, verified against its sha256."""
        with self.factory() as session:
            row = session.scalars(select(Checkpoint).where(Checkpoint.job_id == self.job_id)
                                  .order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).limit(1)).first()
            if row is None:
                return None
            if hashlib.sha256(row.data).hexdigest() != row.sha256:
                raise RuntimeError(f"checkpoint {row.id} of job {self.job_id} fails its sha256 check")
            return row.data

    def forget_metrics_after(self, step: int) -> None:
        """A resumed attempt rewrites the steps after its checkpoint: drop what the lost attempt wrote."""
        with transaction(self.factory) as session:
            self._assert_owner(session)
            session.execute(delete(Metric).where(Metric.job_id == self.job_id, Metric.step > step))

    def heartbeat(self, *, metrics: list[MetricRow], progress: dict[str, Any]) -> bool:
        """Write buffered metric rows and progress in one transaction; returns whether cancel is requested.
        Raises LeaseLost when another runner owns the job."""
        now = utcnow()
        with transaction(self.factory) as session:
            owned = session.execute(
                update(Job).where(Job.id == self.job_id, Job.lease_owner == self.token, Job.status == "running")
                .values(heartbeat_at=now, **progress).returning(Job.cancel_requested)).first()
            if owned is None:
                raise LeaseLost(self.job_id)
            if metrics:
                session.execute(insert(Metric), [
                    {"job_id": self.job_id, "name": m.name, "step": m.step, "epoch": m.epoch, "value": m.value,
                     "time": now} for m in metrics])
            return bool(owned[0])

    def save_checkpoint(self, *, data: bytes, epoch: int, step: int, end_of_epoch: bool,
                        metrics: dict[str, float]) -> None:
        with transaction(self.factory) as session:
            self._assert_owner(session)
            session.add(Checkpoint(job_id=self.job_id, epoch=epoch, step=step, end_of_epoch=end_of_epoch,
                                   metrics=metrics, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                   data=data, created_at=utcnow()))

    def finish(self, *, status: str, error_type: str | None = None, error_message: str | None = None,
               **fields: Any) -> bool:
        """Record a terminal status; False when this runner no longer owns the job."""
        with transaction(self.factory) as session:
            done = session.execute(
                update(Job).where(Job.id == self.job_id, Job.lease_owner == self.token, Job.status == "running")
                .values(status=status, version=Job.version + 1, finished_at=utcnow(), error_type=error_type,
                        error_message=error_message, lease_owner=None, **fields))
            return done.rowcount == 1  # type: ignore[attr-defined]

    def _assert_owner(self, session: Session) -> None:
        owner = session.scalar(select(Job.lease_owner).where(Job.id == self.job_id).with_for_update())
        if owner != self.token:
            raise LeaseLost(self.job_id)


class LeaseLost(RuntimeError):
    """Another runner owns the job now; this one must stop without writing."""
