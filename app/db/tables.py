"""The tables. The job row is the truth about a job; a broker message only wakes a worker."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, MetricValue, UTCDateTime, utcnow

# Expressions GET /v1/jobs filters and sorts by, as PostgreSQL indexes them (app/api/job_lists.py queries
# these very texts: a query matches an expression index only by its expression). SQLite has no such indexes.
DURATION_SECONDS_POSTGRESQL = "CAST(EXTRACT(EPOCH FROM finished_at - started_at) AS DOUBLE PRECISION)"
OPTIMIZER_POSTGRESQL = "(spec #>> '{optimizer,name}')"
DATASET_POSTGRESQL = "COALESCE(spec #>> '{dataset,name}', spec #>> '{dataset,id}')"  # built-in or upload


class Sweep(Base):
    """Many jobs as one experiment (app/db/sweeps.py; the driver: workers/sweep_driver.py). Its trials are
    the jobs with its `sweep_id`; Optuna's study (`study_name`) lives apart from these tables."""

    __tablename__ = "sweep"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # models.sweep_space.SweepSpec, as submitted
    objective: Mapped[dict[str, str]] = mapped_column(JSON)  # {metric, direction}: explicit, never defaulted
    trials: Mapped[int] = mapped_column(Integer)
    parallel: Mapped[int] = mapped_column(Integer)
    queue: Mapped[str] = mapped_column(String(16))  # its trials' queue; the driver's messages go there too
    status: Mapped[str] = mapped_column(String(16))  # app.db.sweeps.SweepStatus
    told: Mapped[int] = mapped_column(Integer, default=0)  # finished trials the driver has told Optuna
    driven_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the driver's latest pass
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_sweep_owner_created", "owner", "created_at", "id"),
        Index("ix_sweep_status", "status"),
    )


class Job(Base):
    __tablename__ = "job"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="local")
    name: Mapped[str | None] = mapped_column(String(200))
    # Labels for finding a job again, not part of the spec. The database keeps `job_tag` (below) in step
    # with `tags` (triggers, migration 0011), so any writer keeps the tag index right.
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str | None] = mapped_column(Text)
    arch: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("dataset.id"))
    queue: Mapped[str] = mapped_column(String(16))
    num_parameters: Mapped[int] = mapped_column(BigInteger)
    # models/cost.py's estimates, made before it queued (null for jobs queued before migration 0014)
    estimated_step_flops: Mapped[int | None] = mapped_column(BigInteger)
    estimated_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)

    status: Mapped[str] = mapped_column(String(16))  # app.db.job_state.JobStatus; only job_state changes it
    version: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every status change
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_restarts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the database's clock
    worker_host: Mapped[str | None] = mapped_column(String(255))  # the host of the latest attempt's claim
    # app.db.job_state.Priority: orders an owner's own queued jobs, never one owner's before another's
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    request_id: Mapped[str | None] = mapped_column(String(64))  # of the POST that queued it, for its log
    # The job and checkpoint it started from (spec.init_from, resolved at POST). No foreign keys: deleting a
    # job deletes every row naming it (app/db/deletion.py), and a parent is refused while it has children.
    parent_job_id: Mapped[str | None] = mapped_column(String(36))
    parent_checkpoint_id: Mapped[int | None] = mapped_column(Integer)

    epoch: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer)
    steps_per_epoch: Mapped[int | None] = mapped_column(Integer)
    latest_metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    best_metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_test_metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    # The latest epoch's wall time and training samples per second, for /metrics.
    epoch_seconds: Mapped[float | None] = mapped_column(Float)
    samples_per_second: Mapped[float | None] = mapped_column(Float)
    # A generative job's samples of its latest epoch ({"epoch", **models.samples.SampleSet}), tens of KiB:
    # deferred, so listing jobs and polling the event stream never load it; only /samples reads it.
    latest_samples: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)

    error_type: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the first attempt's start
    attempt_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the latest attempt's
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A sweep's trial (app/db/sweeps.py): its number in the sweep (Optuna's) and its parameters {path: value}
    sweep_id: Mapped[str | None] = mapped_column(String(36))  # sweep.id; sweeps are never deleted
    trial_number: Mapped[int | None] = mapped_column(Integer)
    trial_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("uq_job_sweep_trial", "sweep_id", "trial_number", unique=True),  # each trial queued once
        Index("ix_job_owner_created", "owner", "created_at", "id"),
        Index("ix_job_status_created", "status", "created_at"),
        Index("ix_job_owner_attempt_started", "owner", "attempt_started_at"),  # an owner's last start
        Index("ix_job_parent", "parent_job_id"),  # children (?parent=, lineage, deletion's check)
        Index("ix_job_parent_checkpoint", "parent_checkpoint_id"),  # the checkpoints children started from
        # id prefixes (`nnforge status 1d44`): LIKE 'prefix%' needs pattern ops under a non-C collation.
        Index("ix_job_owner_id", "owner", "id", postgresql_ops={"id": "varchar_pattern_ops"}),
        # sort=duration, ?optimizer= and ?dataset= (the last two in creation order, as pages are)
        Index("ix_job_owner_duration", "owner", text(DURATION_SECONDS_POSTGRESQL), "id").ddl_if(
            dialect="postgresql"
        ),
        Index("ix_job_owner_optimizer", "owner", text(OPTIMIZER_POSTGRESQL), "created_at", "id").ddl_if(
            dialect="postgresql"
        ),
        Index("ix_job_owner_dataset", "owner", text(DATASET_POSTGRESQL), "created_at", "id").ddl_if(
            dialect="postgresql"
        ),
    )


class JobTag(Base):
    """One row per tag of a job, kept by the database from `job.tags` (migration 0011): `?tag=` filters
    through the (tag, job_id) index instead of reading every job's list."""

    __tablename__ = "job_tag"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)

    __table_args__ = (Index("ix_job_tag_tag_job", "tag", "job_id"),)


class JobBestMetric(Base):
    """One row per finite number in a job's `best_metrics` (and, for names not there, `best_test_metrics`),
    kept by the database (migration 0011): `?sort=-best.val_accuracy` walks (owner, name, value) in order."""

    __tablename__ = "job_best_metric"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_job_best_metric_owner_name_value", "owner", "name", "value", "job_id"),)


class Metric(Base):
    __tablename__ = "metric"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(MetricValue(), nullable=True)  # NaN when NULL
    time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    # The unique index doubles as the index of every series read: WHERE job_id = ? AND name = ? AND step > ?
    __table_args__ = (UniqueConstraint("job_id", "name", "step", name="uq_metric_job_name_step"),)


METRIC_BLOCK_STEPS = 32  # the steps each metric_block row summarises (migration 0007's triggers use it)


class MetricBlock(Base):
    """Per block of METRIC_BLOCK_STEPS steps of a series, its count and its lowest and highest point.
    PostgreSQL keeps it (statement triggers on `metric`, migration 0007) for every writer; a downsampled
    read of a long series reads these instead of every row."""

    __tablename__ = "metric_block"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True)  # (step - 1) // METRIC_BLOCK_STEPS
    n: Mapped[int] = mapped_column(Integer)
    lo_step: Mapped[int] = mapped_column(Integer)
    lo_value: Mapped[float] = mapped_column(Float)
    hi_step: Mapped[int] = mapped_column(Integer)
    hi_value: Mapped[float] = mapped_column(Float)


class Checkpoint(Base):
    __tablename__ = "checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    end_of_epoch: Mapped[bool] = mapped_column(Boolean)
    # False for a best epoch's weights written after it (no optimizer state): never resumed from
    resumable: Mapped[bool] = mapped_column(Boolean, default=True)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # loaded only when downloaded
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Evaluation(Base):
    """A report, robustness curve or attribution of one checkpoint of a job (app/db/evaluations.py)."""

    __tablename__ = "evaluation"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # models.evaluate.params.EvaluationKind
    status: Mapped[str] = mapped_column(String(16))  # queued | running | succeeded | failed
    # The checkpoint evaluated; no foreign key: the result outlives a checkpoint deleted later.
    checkpoint_id: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Dataset(Base):
    __tablename__ = "dataset"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="local", index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(8))
    label_column: Mapped[str | None] = mapped_column(String(256))
    info: Mapped[dict[str, Any]] = mapped_column(JSON)  # models.dataset_info.DatasetInfo
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    # A second upload of the same bytes is found by content, not stored again.
    __table_args__ = (Index("ix_dataset_owner_sha256", "owner", "sha256"),)


class ApiToken(Base):
    """A bearer token; only its sha256 is kept, the token itself is shown once when created."""

    __tablename__ = "api_token"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """The first response to a POST sent with an `Idempotency-Key`, replayed for the same key and body."""

    __tablename__ = "idempotency_key"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while the first request is in flight
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"body": …, "headers": {…}}
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
