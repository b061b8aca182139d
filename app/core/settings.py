"""Service settings from the environment (and `.env`), read once by the entry points."""

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Settings(BaseSettings):
    """Every setting, its environment variable (upper case) and its default. Defaults need no setup:
    SQLite and a filesystem broker under NNFORGE_HOME."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    nnforge_home: Path = Field(default=Path(".nnforge"), description="data folder of the embedded mode")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite in NNFORGE_HOME"
    )
    redis_url: str | None = Field(default=None, description="Redis broker URL; default: filesystem broker")
    host: str = Field(default="127.0.0.1", description="address `nnforge serve` listens on")
    port: int = Field(default=8000, ge=1, le=65535)
    auth: bool = Field(default=True, description="require API tokens; off is allowed on loopback only")
    rate_limit_per_second: float = Field(default=50.0, gt=0, description="requests per second per owner")
    rate_limit_burst: int = Field(default=100, ge=1, description="requests an owner may send at once")
    unauthenticated_rate_limit_per_second: float = Field(
        default=20.0,
        gt=0,
        description="401s per second per client IP (IPv6: per /64); beyond them 429, and no token lookup",
    )
    unauthenticated_rate_limit_burst: int = Field(
        default=40, ge=1, description="401s a client IP may collect at once"
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a request's line and headers must all arrive within this time (from the connection's "
        "start, or the request's first byte on a kept-alive one); else 408 and the connection is closed",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="the longest silence in a request body, and its head start before "
        "BODY_MIN_BYTES_PER_SECOND counts; else 408 and the connection is closed",
    )
    body_min_bytes_per_second: float = Field(
        default=1024.0,
        gt=0,
        description="the average rate a request body must keep after its first BODY_TIMEOUT_SECONDS",
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, le=300, description="an idle kept-alive connection is closed after this"
    )
    max_connections: int = Field(
        default=512,
        ge=1,
        le=100_000,
        description="connections one API process holds at once (idle and half-sent ones count); a request "
        "on one more gets 503",
    )
    token_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="how long the API trusts a token it has looked up; a revoked token stops working "
        "within this time (0: look every token up on every request)",
    )
    status_cache_seconds: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="GET /v1/jobs/{id} answers from memory for this long (keep it under HEARTBEAT_SECONDS; "
        "0: read the database every time); a cancel through the same API process shows at once; predict "
        "trusts its look-up of a job's checkpoint this long too",
    )
    worker_device: str = Field(
        default="auto",
        pattern="^(auto|cpu|gpu)$",
        description="which queues a worker takes: cpu, gpu, or auto (gpu if nvidia-smi works)",
    )
    worker_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="training processes per worker (jobs at once); default: 1 on a GPU worker, else the "
        "cores this process may use ÷ TORCH_THREADS",
    )
    heartbeat_seconds: float = Field(
        default=1.0, gt=0, le=60, description="how often a running job writes progress and reads cancel"
    )
    max_job_seconds: int = Field(default=24 * 3600, ge=1, description="longest allowed run of one job")
    max_step_seconds: float = Field(
        default=600.0,
        gt=0,
        description="longest a training process may go without progress (one step, or the evaluation or "
        "checkpoint between steps); longer fails the job as timeout, naming the step",
    )
    cancel_grace_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="a cancel the training process has not acted on within this time stops it (SIGTERM, "
        "then SIGKILL); the job ends cancelled with its last checkpoint",
    )
    max_restarts: int = Field(
        default=3, ge=0, le=100, description="times a job whose worker was lost is resumed before it fails"
    )
    max_queued_jobs_per_owner: int = Field(default=100, ge=1, description="more are refused with 429")
    max_running_jobs_per_owner: int = Field(default=4, ge=1, description="more wait in the queue")
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a running job whose heartbeat is older than "
        "this is taken back by the reconciler and resumed from its checkpoint",
    )
    broker_visibility_seconds: float | None = Field(
        default=None, gt=0, description="Redis visibility timeout; default MAX_JOB_SECONDS + 1 h"
    )
    reconcile_seconds: float = Field(default=10.0, gt=0, description="how often each worker reconciles")
    db_outage_seconds: float = Field(
        default=600.0,
        ge=0,
        description="how long a worker retries its database writes through an outage before giving up",
    )
    torch_threads: int = Field(default=1, ge=1, le=256, description="torch CPU threads per training process")
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="finished jobs are deleted this many days after they finished, by every worker's "
        "reconciler (a few per pass); default: kept until deleted",
    )
    max_storage_bytes_per_owner: int | None = Field(
        default=None,
        ge=0,
        description="a job POST or dataset upload that would take an owner's storage (GET /v1/usage) past "
        "this is refused with 413; default: no limit",
    )
    max_job_memory_bytes: int = Field(
        default_factory=lambda: _physical_memory() // 2,
        ge=1,
        description="memory one job may use: a spec whose estimate exceeds it is refused with 422; default: "
        "half the machine's physical memory",
    )
    max_step_flops: float = Field(
        default=2e11,
        gt=0,
        le=1e18,
        description="estimated FLOPs of one training step (forward and backward over a batch); more: 422",
    )
    max_dry_run_flops: float = Field(
        default=2e9,
        gt=0,
        le=1e18,
        description="estimated FLOPs of the check a POST runs (one training step and one evaluation on 2 "
        "samples; a GAN's evaluation generates 2,000); more: 422. Bounds how long a POST takes",
    )
    dry_run_timeout_seconds: float = Field(
        default=10.0, gt=0, le=600, description="a dry run that takes longer is stopped: 422"
    )
    dry_run_memory_bytes: int = Field(
        default=1024**3,
        ge=16 * 1024**2,
        description="address space a dry run's process may add to the one it forks from; beyond: 422",
    )
    max_concurrent_dry_runs: int = Field(
        default=4,
        ge=1,
        le=256,
        description="dry runs one API process runs at once; more wait for a free one up to "
        "DRY_RUN_TIMEOUT_SECONDS, then 429",
    )
    upload_parse_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="an upload whose check takes longer is refused: 422"
    )
    upload_parse_memory_bytes: int = Field(
        default=1024**3,
        ge=16 * 1024**2,
        description="address space an upload's check may add to the process it forks from; beyond: 413",
    )
    max_concurrent_upload_parses: int = Field(
        default=2,
        ge=1,
        le=256,
        description="uploads one API process checks at once; one more gets 429 with Retry-After",
    )
    trainer_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="niceness added to each training process, so that the API and the database answer at "
        "once on a machine a job keeps busy (training takes every cycle they leave)",
    )

    max_predict_batch: int = Field(
        default=1024, ge=1, le=100_000, description="inputs (or a GAN's n) one predict request may send"
    )
    predict_session_cache: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="ONNX Runtime sessions an API process keeps, one per checkpoint, the least recently "
        "used dropped beyond; each holds its model's weights (4 bytes a parameter)",
    )
    predict_onnx_cache_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="exported ONNX files kept under NNFORGE_HOME/onnx; beyond, the least recently used go",
    )
    predict_export_timeout_seconds: float = Field(
        default=300.0, gt=0, le=3600, description="the longest a checkpoint's ONNX export may take; then 503"
    )
    predict_export_memory_bytes: int = Field(
        default=2 * 1024**3,
        ge=16 * 1024**2,
        description="address space a checkpoint's ONNX export may add to the process it forks from; "
        "beyond: 503",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resolved_database_url(self) -> str:
        if self.database_url is None:
            return f"sqlite:///{(self.nnforge_home / 'nnforge.db').resolve()}"
        # Plain postgresql:// URLs get the psycopg 3 driver we ship.
        for prefix in ("postgresql://", "postgres://"):
            if self.database_url.startswith(prefix):
                return "postgresql+psycopg://" + self.database_url.removeprefix(prefix)
        return self.database_url

    @property
    def broker_folder(self) -> Path:
        return (self.nnforge_home / "broker").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
