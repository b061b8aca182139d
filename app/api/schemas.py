"""Request and response bodies of the API (pydantic), kept apart from the tables."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.db.job_state import ErrorKind, JobStatus, Priority
from models.specs import JobSpec, ObjectiveSpec

# Metric values may be NaN or infinite (a diverged run): JSON carries them as "NaN", "Infinity", "-Infinity".
METRIC_VALUES = ConfigDict(ser_json_inf_nan="strings")


# What a user attaches to a job to find it again (not part of the spec). README's limits table lists these.
MAX_TAGS = 20
MAX_TAG_LENGTH = 40
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=/-]*$"  # starts with a letter or digit: `-t` stays the CLI's
MAX_NOTES_LENGTH = 10_000
MAX_NAME_LENGTH = 200
MIN_ID_PREFIX = 4


def _no_nul(text: str) -> str:
    if "\x00" in text:  # PostgreSQL's text cannot hold it: refused here rather than failing as a 500 there
        raise ValueError("text may not contain a NUL character (\\x00)")
    return text


Text = Annotated[str, AfterValidator(_no_nul)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_LENGTH, pattern=TAG_PATTERN)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS, description="a set: repeats collapse, in given order")]
Notes = Annotated[Text, Field(max_length=MAX_NOTES_LENGTH, description="free text about the job")]
Name = Annotated[Text, Field(max_length=MAX_NAME_LENGTH)]


def _distinct(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


class JobCreate(JobSpec):
    name: Name | None = None
    tags: Tags = Field(default_factory=list)
    notes: Notes | None = None
    priority: Priority = Field(
        default=Priority.NORMAL,
        description="orders this owner's own queued jobs (high first, then by age); never puts them ahead "
        "of another owner's turn",
    )

    _distinct_tags = field_validator("tags")(_distinct)


class JobUpdate(BaseModel):
    """PATCH /v1/jobs/{id}: only the fields sent change (`null` clears `name` or `notes`). `tags` replaces
    the set; `add_tags`/`remove_tags` change it in place, so two clients tagging at once lose nothing."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    notes: Notes | None = None
    tags: Tags = []
    add_tags: Tags = []
    remove_tags: Tags = []

    _distinct_tags = field_validator("tags", "add_tags", "remove_tags")(_distinct)


JobSort = Annotated[
    str,
    StringConstraints(max_length=80, pattern=r"^[-+]?(created|duration|best\.[A-Za-z0-9_]{1,64})$"),
]


class JobListQuery(BaseModel):
    """GET /v1/jobs: every filter given must hold; `sort` is a key, `-` first for descending."""

    status: JobStatus | None = None
    arch: Text | None = Field(default=None, max_length=32)
    tag: list[Tag] = Field(default=[], max_length=MAX_TAGS, description="repeatable: the job has every one")
    name: Name | None = Field(default=None, description="substring, any case")
    optimizer: Text | None = Field(default=None, max_length=32, description="the spec's optimizer.name")
    dataset: Text | None = Field(default=None, max_length=64, description="a built-in's name or an upload id")
    sweep_id: str | None = Field(default=None, max_length=36, description="the trials of this sweep")
    created_after: datetime | None = Field(default=None, description="inclusive; without a zone, UTC")
    created_before: datetime | None = Field(default=None, description="exclusive; without a zone, UTC")
    id_prefix: str | None = Field(
        default=None, min_length=MIN_ID_PREFIX, max_length=36, pattern=r"^[0-9A-Fa-f-]+$"
    )
    parent: str | None = Field(
        default=None, max_length=36, pattern=r"^[0-9A-Fa-f-]+$", description="the jobs started from this job"
    )
    sort: JobSort = Field(
        default="-created",
        description="created, duration or best.METRIC (the best epoch's value; test_* from the best "
        "checkpoint's test score); `-` first for descending. Jobs without the key come last.",
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=400)

    @field_validator("created_after", "created_before", mode="before")
    @classmethod
    def _not_a_number(cls, value: Any) -> Any:
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[\d.]+([eE][-+]?\d+)?\s*", value):
            # pydantic would read "2026" as a Unix time, 33 minutes after 1970 began
            raise ValueError("an ISO 8601 date or time (2026-01-31, 2026-01-31T12:00:00Z), not a number")
        return value

    @field_validator("created_after", "created_before")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+14:00 is before the first UTC datetime
            raise ValueError("outside the datetimes UTC can express") from None


class Progress(BaseModel):
    epoch: int
    total_epochs: int
    step: int
    total_steps: int | None
    fraction: float


class JobError(BaseModel):
    type: ErrorKind
    message: str


class ParentPublic(BaseModel):
    """The job and checkpoint a job started from (its spec's init_from, resolved when it was submitted)."""

    job_id: str
    checkpoint_id: int = Field(description="kept (retention and deletion refuse it) while this job exists")
    load: Literal["all", "body"]
    freeze: Literal["none", "body"]


class JobPublic(BaseModel):
    model_config = METRIC_VALUES

    id: str
    name: str | None
    tags: list[str]
    notes: str | None
    status: JobStatus
    arch: str
    spec: dict[str, Any]
    num_parameters: int
    estimated_step_flops: int | None = Field(
        default=None,
        description="FLOPs of one training step as estimated before it queued (models/cost.py): forward and "
        "backward over a batch, two per multiply-add",
    )
    estimated_memory_bytes: int | None = Field(
        default=None,
        description="memory its training needs as estimated before it queued: parameters, gradients, "
        "optimizer state, a checkpoint's copy, activations at the batch size and the data",
    )
    queue: str
    priority: Priority
    queue_position: int | None = Field(
        description="while queued, the jobs of its queue a worker would start before it as things stand "
        "(fair share between owners, then priority and age within one; 0: next)"
    )
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
    sweep_id: str | None = Field(default=None, description="the sweep this job is a trial of")
    trial_number: int | None = Field(default=None, description="its trial number in that sweep, from 0")
    error: JobError | None
    created_at: datetime
    started_at: datetime | None = Field(description="when its first attempt started")
    attempt_started_at: datetime | None = Field(description="when its latest attempt started")
    last_heartbeat_at: datetime | None = Field(
        default=None,
        description="the latest sign of life of its training process, by the database's clock (every "
        "HEARTBEAT_SECONDS while it runs; a running job with none for LEASE_SECONDS is stalled and will be "
        "taken back)",
    )
    worker_host: str | None = Field(default=None, description="the host its latest attempt ran on")
    finished_at: datetime | None
    dataset_deleted: bool = Field(
        default=False, description="the uploaded dataset it trained on was deleted (its checkpoints stay)"
    )
    parent: ParentPublic | None = Field(default=None, description="the job it started from (init_from)")


class LineageJob(BaseModel):
    id: str
    name: str | None
    status: JobStatus
    arch: str
    created_at: datetime
    parent: ParentPublic | None


class LineagePublic(BaseModel):
    """GET /v1/jobs/{id}/lineage: where a job came from and what came from it."""

    job: LineageJob
    ancestors: list[LineageJob] = Field(description="its parent first, then the parent's parent, …")
    descendants: list[LineageJob] = Field(description="breadth first, each naming its parent")
    truncated: bool = Field(description="over MAX_LINEAGE_JOBS ancestors or descendants: the rest left out")


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
    resumable: bool = Field(description="false: a best epoch's weights alone, written after that epoch")
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


class AmountPublic(BaseModel):
    count: int
    bytes: int


class UsagePublic(BaseModel):
    """What the owner stores. Checkpoint and dataset bytes are exact; metrics, logs and jobs are estimates
    from their rows (app/db/usage.py says how they were measured)."""

    owner: str
    total_bytes: int
    limit_bytes: int | None = Field(description="MAX_STORAGE_BYTES_PER_OWNER; null: unlimited")
    jobs: AmountPublic = Field(description="job rows: the spec and a GAN's latest samples, as stored")
    checkpoints: AmountPublic = Field(description="checkpoint files, their exact sizes")
    metrics: AmountPublic = Field(description="metric rows × the bytes a row takes on this database")
    logs: AmountPublic = Field(description="log lines: their text and a measured per-row overhead")
    datasets: AmountPublic = Field(description="uploaded files, their exact sizes")
