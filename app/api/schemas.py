"""Request and response bodies of the API (pydantic), kept apart from the tables."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.db.job_state import ErrorKind, JobStatus
from models.specs import JobSpec, ObjectiveSpec

# Metric values may be NaN or infinite (a diverged run): JSON carries them as "NaN", "Infinity", "-Infinity".
METRIC_VALUES = ConfigDict(ser_json_inf_nan="strings")


class JobCreate(JobSpec):
    name: str | None = Field(default=None, max_length=200)


class Progress(BaseModel):
    epoch: int
    total_epochs: int
    step: int
    total_steps: int | None
    fraction: float


class JobError(BaseModel):
    type: ErrorKind
    message: str


class JobPublic(BaseModel):
    model_config = METRIC_VALUES

    id: str
    name: str | None
    status: JobStatus
    arch: str
    spec: dict[str, Any]
    num_parameters: int
    queue: str
    queue_position: int | None = Field(description="jobs ahead of this one while queued (0: next)")
    attempt: int
    max_restarts: int
    cancel_requested: bool
    progress: Progress
    latest_metrics: dict[str, float]
    objective: ObjectiveSpec | None = Field(description="the metric that picks the best epoch")
    best_metrics: dict[str, float] = Field(description="the epoch metrics of the best epoch")
    best_epoch: int | None
    best_test_metrics: dict[str, float] = Field(
        description="test_* of the best epoch's weights: the score of the checkpoint `best` downloads"
    )
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page; null at the end")


class MetricPoint(BaseModel):
    model_config = METRIC_VALUES

    step: int
    epoch: int
    value: float
    time: datetime


class MetricsPublic(BaseModel):
    job_id: str
    series: dict[str, list[MetricPoint]]
    downsampled: bool


class SamplesPublic(BaseModel):
    """A generative job's samples of its latest epoch, in raw data units (the dataset's own scale)."""

    job_id: str
    epoch: int
    kind: Literal["points", "images"] = Field(description="points: vector data; images: everything else")
    shape: list[int] = Field(description="one sample's shape, the dataset's sample_shape")
    samples: list[Any] = Field(description="(n, *shape) generated; null where a value is not finite")
    reference: list[Any] = Field(description="(m, *shape) real training samples, to draw the samples against")


class CheckpointPublic(BaseModel):
    model_config = METRIC_VALUES

    id: int
    epoch: int
    step: int
    end_of_epoch: bool
    metrics: dict[str, float]
    size: int
    sha256: str
    created_at: datetime


class DatasetPublic(BaseModel):
    id: str | None = Field(description="null for built-ins, which are referenced by name")
    name: str
    builtin: bool
    task: Literal["classification", "regression", "unlabelled"]
    num_samples: int
    sample_shape: list[int]
    target_shape: list[int]
    num_classes: int | None
    classes: list[int | str] | None
    feature_names: list[str] | None = Field(default=None, description="a CSV's columns, less the label")
    description: str
    filename: str | None = None
    label_column: str | None = None
    format: str | None = None
    size: int | None = None
    sha256: str | None = None
    created_at: datetime | None = None


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]


class Catalog(BaseModel):
    architectures: dict[str, dict[str, Any]]
    optimizers: dict[str, dict[str, Any]]
    datasets: list[DatasetPublic]
    templates: dict[str, dict[str, Any]]
    limits: dict[str, int | float]
    job_schema: dict[str, Any]
