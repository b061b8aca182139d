"""Bodies of the live routes: the event stream's payloads and the job log (pydantic)."""

from datetime import datetime

from pydantic import BaseModel, Field

from app.api.schemas import METRIC_VALUES, Progress
from app.db.job_state import JobStatus


class MetricEventPoint(BaseModel):
    model_config = METRIC_VALUES

    name: str
    step: int
    epoch: int
    value: float
    time: datetime


class MetricsEvent(BaseModel):
    """`event: metrics`: the metric rows written since the previous event, in write order."""

    points: list[MetricEventPoint]


class ProgressEvent(BaseModel):
    """`event: progress`: where the run stands, sent when the step or epoch moves."""

    model_config = METRIC_VALUES

    progress: Progress
    latest_metrics: dict[str, float]
    best_metrics: dict[str, float]
    best_epoch: int | None


class EndEvent(BaseModel):
    """`event: end`: the job is over and every metric row has been sent; the stream closes."""

    status: JobStatus
    error: str | None = Field(description="the error type of a failed or cancelled job")


class LogLine(BaseModel):
    id: int
    attempt: int
    time: datetime
    level: str
    logger: str
    message: str


class LogsPublic(BaseModel):
    job_id: str
    status: JobStatus = Field(description="the job's status when the lines were read")
    items: list[LogLine]
    next_after: int = Field(description="pass as ?after= to read only newer lines")
