"""Reading a job's stored log lines (written by workers.job_log) in id order, from a cursor."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.live_schemas import LogLine
from app.db.job_logs import JobLog


def read_log_lines(*, session: Session, job_id: str, after: int, limit: int) -> list[LogLine]:
    rows = session.scalars(
        select(JobLog).where(JobLog.job_id == job_id, JobLog.id > after).order_by(JobLog.id).limit(limit)
    )
    return [LogLine.model_validate(row, from_attributes=True) for row in rows]
