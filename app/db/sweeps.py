"""A sweep's state: its row, its trials (the jobs that carry its id) as readers see them, the lock under which
trials are added, its cancel, and which sweeps the driver (workers/sweep_driver.py) must look at.

A trial is a job: it has the job's lease, resume, cancel, metrics and checkpoints. Its state is its job's
status (`succeeded` reads as `complete`, Optuna's word); its value is the best epoch's objective."""

import math
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from math import ceil
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from app.db import job_state
from app.db.base import utcnow
from app.db.job_state import ErrorKind, JobStatus
from app.db.locks import lock_owner_jobs
from app.db.tables import Dataset, Job, Sweep
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.errors import SpecError
from models.specs import DatasetRef, JobSpec
from models.splits import split_sizes

# A cancelled sweep's trials that end later are still told to Optuna, for this long after the cancel.
TELL_AFTER_CANCEL = timedelta(days=1)


class SweepStatus(StrEnum):
    RUNNING = JobStatus.RUNNING.value
    SUCCEEDED = JobStatus.SUCCEEDED.value  # every trial ended and at least one completed
    FAILED = JobStatus.FAILED.value  # every trial ended and none completed
    CANCELLED = JobStatus.CANCELLED.value


class TrialState(StrEnum):
    QUEUED = JobStatus.QUEUED.value
    RUNNING = JobStatus.RUNNING.value
    COMPLETE = "complete"
    PRUNED = JobStatus.PRUNED.value
    FAILED = JobStatus.FAILED.value
    CANCELLED = JobStatus.CANCELLED.value


TRIAL_STATE = {
    JobStatus.QUEUED: TrialState.QUEUED,
    JobStatus.RUNNING: TrialState.RUNNING,
    JobStatus.SUCCEEDED: TrialState.COMPLETE,
    JobStatus.PRUNED: TrialState.PRUNED,
    JobStatus.FAILED: TrialState.FAILED,
    JobStatus.CANCELLED: TrialState.CANCELLED,
}
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class Trial:
    number: int
    job_id: str
    params: dict[str, Any]
    state: TrialState
    value: float | None  # the best epoch's objective so far (a pruned trial's too); None without one
    epochs_run: int
    spec: dict[str, Any]


def objective_value(best_metrics: dict[str, float], metric: str) -> float | None:
    value = best_metrics.get(metric)
    return float(value) if value is not None and math.isfinite(value) else None


def trials_of(session: Session, sweep: Sweep) -> list[Trial]:
    """The sweep's trials by number (at most MAX_SWEEP_TRIALS rows)."""
    jobs = session.scalars(select(Job).where(Job.sweep_id == sweep.id).order_by(Job.trial_number))
    metric = sweep.objective["metric"]
    return [
        Trial(
            number=job.trial_number or 0,
            job_id=job.id,
            params=job.trial_params or {},
            state=TRIAL_STATE[JobStatus(job.status)],
            value=objective_value(job.best_metrics, metric),
            epochs_run=job.epoch,
            spec=job.spec,
        )
        for job in jobs
    ]


def best_trial(sweep: Sweep, trials: list[Trial]) -> Trial | None:
    """The completed trial with the best value (the lowest number among equals), as Optuna ranks them."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    sign = -1.0 if sweep.objective["direction"] == "maximize" else 1.0
    return min(done, key=lambda t: (sign * (t.value or 0.0), t.number), default=None)


def trial_counts(trials: list[Trial]) -> dict[str, int]:
    counted = Counter(t.state for t in trials)
    return {state.value: counted.get(state, 0) for state in TrialState}


def lock_sweep(session: Session, *, sweep_id: str) -> Sweep | None:
    """The sweep, read after taking its owner's job lock (app/db/locks.py), held to the commit: whoever adds
    its trials or cancels it does so one at a time, and the queued limit counts every trial added."""
    owner = session.scalar(select(Sweep.owner).where(Sweep.id == sweep_id))
    if owner is None:
        return None
    lock_owner_jobs(session, owner=owner)
    return session.get(Sweep, sweep_id, populate_existing=True)


def cancel_sweep(session: Session, *, sweep: Sweep) -> None:
    """Cancel the sweep and its queued and running trials (a running one stops at its next heartbeat,
    keeping a checkpoint). The caller holds lock_sweep, so no trial is added meanwhile."""
    if sweep.status != SweepStatus.RUNNING:
        return
    sweep.status, sweep.finished_at = SweepStatus.CANCELLED, utcnow()
    active = session.execute(
        select(Job.id, Job.status, Job.version).where(Job.sweep_id == sweep.id, Job.status.in_(ACTIVE))
    ).all()
    for job_id, status, version in active:
        if status != JobStatus.QUEUED or not job_state.cancel_queued(session, job_id=job_id, version=version):
            job_state.request_cancel(session, job_id=job_id)


def dataset_info(session: Session, *, ref: DatasetRef, owner: str) -> tuple[DatasetInfo, str | None]:
    """The base spec's dataset: a built-in, or the owner's upload (by id)."""
    if ref.name is not None:
        return BUILTIN_DATASETS[ref.name], None
    row = session.get(Dataset, ref.id) if ref.id is not None else None
    if row is None or row.owner != owner:
        raise SpecError.single("base.dataset.id", ref.id, "no uploaded dataset of yours has this id")
    return DatasetInfo.model_validate(row.info), row.id


def new_trial_job(
    session: Session,
    *,
    sweep: Sweep,
    number: int,
    params: dict[str, Any],
    run: "TrialRun",
    dataset_id: str | None,
    max_restarts: int,
    error: SpecError | None = None,
) -> Job:
    """Insert trial `number` as a queued job of the sweep's owner, or, when its spec failed its dry check
    (`error`), as a job that failed with that error (never queued), so every trial number has a job."""
    now = utcnow()
    job = Job(
        id=str(uuid.uuid4()),
        owner=sweep.owner,
        name=f"{sweep.name or 'sweep ' + sweep.id[:8]} #{number}",
        tags=[],
        arch=run.arch,
        spec=run.spec,
        dataset_id=dataset_id,
        queue=run.queue,
        num_parameters=run.num_parameters,
        status=JobStatus.QUEUED if error is None else JobStatus.FAILED,
        priority=job_state.Priority.NORMAL,
        version=0,
        attempt=0,
        max_restarts=max_restarts,
        cancel_requested=False,
        epoch=0,
        step=0,
        total_epochs=run.total_epochs,
        steps_per_epoch=run.steps_per_epoch,
        latest_metrics={},
        best_metrics={},
        best_test_metrics={},
        created_at=now,
        finished_at=None if error is None else now,
        error_type=None if error is None else ErrorKind.SPEC_ERROR,
        error_message=None if error is None else str(error),
        sweep_id=sweep.id,
        trial_number=number,
        trial_params=params,
    )
    session.add(job)
    session.flush()
    return job


@dataclass(frozen=True)
class TrialRun:
    """What a trial's job row says about its run."""

    spec: dict[str, Any]  # the checked JobSpec as JSON (or, for a trial that cannot run, what was sampled)
    arch: str
    queue: str
    num_parameters: int
    total_epochs: int
    steps_per_epoch: int | None

    @classmethod
    def of(cls, spec: JobSpec, *, info: DatasetInfo, queue: str, num_parameters: int) -> "TrialRun":
        training = spec.training
        n_train = split_sizes(info.num_samples, training.validation_fraction, training.test_fraction)["train"]
        return cls(
            spec.model_dump(mode="json"),
            spec.model.arch,
            queue,
            num_parameters,
            training.epochs,
            ceil(n_train / training.batch_size),
        )

    @classmethod
    def unrunnable(cls, raw: dict[str, Any], *, queue: str) -> "TrialRun":
        model = raw.get("model")
        arch = str(model.get("arch", "?"))[:32] if isinstance(model, dict) else "?"
        return cls(raw, arch, queue, 0, 0, None)


def queued_count(session: Session, *, owner: str) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Job).where(Job.owner == owner, Job.status == JobStatus.QUEUED)
        )
        or 0
    )


def sweeps_to_drive(session: Session, *, idle_seconds: float = 0.0) -> list[tuple[str, str]]:
    """(id, queue) of the sweeps a driver pass would change: a running sweep with room for a trial (fewer
    trials than asked, fewer active than `parallel`), or with every trial ended, or any recent sweep with
    ended trials not yet told to Optuna. With `idle_seconds`, only those not driven for that long."""
    active = func.sum(case((Job.status.in_(ACTIVE), 1), else_=0))
    jobs = (
        select(Job.sweep_id, func.count().label("total"), active.label("active"))
        .where(Job.sweep_id.is_not(None))
        .group_by(Job.sweep_id)
        .subquery()
    )
    total, running = func.coalesce(jobs.c.total, 0), func.coalesce(jobs.c.active, 0)
    is_running = Sweep.status == SweepStatus.RUNNING
    query = (
        select(Sweep.id, Sweep.queue)
        .outerjoin(jobs, jobs.c.sweep_id == Sweep.id)
        .where(
            or_(is_running, Sweep.finished_at > utcnow() - TELL_AFTER_CANCEL),
            or_(
                and_(is_running, total < Sweep.trials, running < Sweep.parallel),
                and_(is_running, total >= Sweep.trials, running == 0),
                total - running > Sweep.told,
            ),
        )
    )
    if idle_seconds > 0:  # a new sweep's first pass is on its way (POST sent it): not idle yet either
        idle = utcnow() - timedelta(seconds=idle_seconds)
        query = query.where(func.coalesce(Sweep.driven_at, Sweep.created_at) < idle)
    return [(row[0], row[1]) for row in session.execute(query)]
