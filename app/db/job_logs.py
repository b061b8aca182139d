"""The worker's log lines of each job, kept in the database beside its metrics so the API can serve them,
and the index the live event stream reads metrics by."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow

# Imported so that `job`, which job_log's foreign key names, is always on Base.metadata with it.
from app.db.tables import Job, Metric  # noqa: F401


class JobLog(Base):
    __tablename__ = "job_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(10))
    logger: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)

    # Every read is "this job's lines after id N", in id order.
    __table_args__ = (Index("ix_job_log_job_id_id", "job_id", "id"),)


# The event stream (GET /v1/jobs/{id}/events) polls "this job's metric rows after id N"; the unique
# (job_id, name, step) index cannot serve that, this one can. Created by migration 0003.
Index("ix_metric_job_id_id", Metric.job_id, Metric.id)
