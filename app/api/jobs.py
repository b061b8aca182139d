"""Job logic behind the routes: create (validate, estimate, dry-check, insert), read, update, cancel (lists
are in app/api/job_lists.py). Torch-free: the dry check runs in a child process (app/api/dry_runs.py)."""

import uuid
from math import ceil

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.api.dry_runs import bounded_dry_check
from app.api.lineage import parent_of, resolve_parent
from app.api.schemas import MAX_TAGS, JobCreate, JobError, JobPublic, JobUpdate, Progress
from app.core.queue import QUEUE_FOR_DEVICE
from app.core.request_id import current as current_request_id
from app.core.settings import Settings
from app.db import job_state
from app.db.base import utcnow
from app.db.job_state import TERMINAL, ErrorKind, JobStatus, Priority
from app.db.locks import lock_owner_jobs
from app.db.tables import Dataset, Job
from models.cost import CostLimits, check_cost, estimate
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.errors import SpecError
from models.specs import JobSpec
from models.splits import split_sizes


class JobNotFound(LookupError):
    pass


class JobConflict(RuntimeError):
    """The request does not fit the job's state (e.g. cancelling a finished job)."""


def dataset_info_for(*, session: Session, spec: JobSpec, owner: str) -> tuple[DatasetInfo, str | None]:
    ref = spec.dataset
    if ref.name is not None:
        return BUILTIN_DATASETS[ref.name], None
    if ref.path is not None:
        raise SpecError.single(
            "dataset.path",
            ref.path,
            "the service reads no local paths: upload the file "
            'with POST /v1/datasets and reference it as {"id": …}',
        )
    row = session.get(Dataset, ref.id)
    if row is None or row.owner != owner:
        raise SpecError.single("dataset.id", ref.id, "no uploaded dataset has this id")
    return DatasetInfo.model_validate(row.info), row.id


class TooManyJobs(RuntimeError):
    """An owner is at its limit of queued jobs."""


def _refuse_when_full(session: Session, *, owner: str, limit: int) -> None:
    queued = (
        session.scalar(
            select(func.count()).select_from(Job).where(Job.owner == owner, Job.status == JobStatus.QUEUED)
        )
        or 0
    )
    if queued >= limit:
        raise TooManyJobs(f"{queued} jobs are already queued, the limit per owner; wait for some to start")


def create_job(*, session: Session, job_in: JobCreate, owner: str, limits: Settings) -> Job:
    """Validate against the dataset, refuse what the estimate puts over the cost limits, dry-check in a
    bounded child process and insert the job as queued (not yet sent). The queued limit holds exactly however
    many POSTs race: the count that decides is taken under the owner's lock (app/db/locks.py), which the
    caller's commit releases, so the insert it allows is counted by the next one."""
    limit = limits.max_queued_jobs_per_owner
    _refuse_when_full(session, owner=owner, limit=limit)  # a cheap early answer, before the dry check

    spec = JobSpec.model_validate(job_in.model_dump(exclude={"name", "tags", "notes", "priority"}))
    info, dataset_id = dataset_info_for(session=session, spec=spec, owner=owner)
    cost = estimate(spec, info)
    check_cost(
        cost,
        CostLimits(
            max_step_flops=limits.max_step_flops,
            max_memory_bytes=limits.max_job_memory_bytes,
            max_dry_run_flops=limits.max_dry_run_flops,
        ),
    )
    dry = bounded_dry_check(spec, info, limits)
    parent = None
    if spec.init_from is not None:  # stored with the parent's whole id
        parent = resolve_parent(session=session, spec=spec, info=info, owner=owner, settings=limits)
        spec = spec.model_copy(update={"init_from": spec.init_from.model_copy(update={"job": parent.job_id})})
    # Stored as run: the objective is explicit, so every reader shows the same "best".
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"objective": dry.objective})})
    n_train = split_sizes(info.num_samples, spec.training.validation_fraction, spec.training.test_fraction)[
        "train"
    ]
    lock_owner_jobs(session, owner=owner)  # held from here to the commit: the dry check is not waited on
    _refuse_when_full(session, owner=owner, limit=limit)
    job = Job(
        id=str(uuid.uuid4()),
        owner=owner,
        name=job_in.name,
        tags=job_in.tags,
        notes=job_in.notes,
        arch=spec.model.arch,
        spec=spec.model_dump(mode="json"),
        dataset_id=dataset_id,
        queue=QUEUE_FOR_DEVICE[spec.training.device],
        num_parameters=dry.parameters,
        estimated_step_flops=cost.step_flops,
        estimated_memory_bytes=cost.memory_bytes,
        status=JobStatus.QUEUED,
        priority=job_in.priority,
        request_id=current_request_id(),
        parent_job_id=parent.job_id if parent else None,
        parent_checkpoint_id=parent.checkpoint_id if parent else None,
        version=0,
        attempt=0,
        max_restarts=limits.max_restarts,
        cancel_requested=False,
        epoch=0,
        step=0,
        total_epochs=spec.training.epochs,
        steps_per_epoch=ceil(n_train / spec.training.batch_size),
        latest_metrics={},
        best_metrics={},
        best_test_metrics={},
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    return job


def get_job(*, session: Session, job_id: str, owner: str, lock: bool = False) -> Job:
    """The owner's job (`lock`: its row locked until the transaction ends); JobNotFound for any other."""
    job = session.get(Job, job_id, with_for_update=True if lock else None)
    if job is None or job.owner != owner:
        raise JobNotFound(job_id)
    return job


def update_job(*, session: Session, job: Job, changes: JobUpdate) -> Job:
    """Apply a PATCH: the fields sent, in any status. Tags: `tags` replaces the set, else `remove_tags`
    then `add_tags` change it. The caller holds the row lock (get_job(lock=True)), so concurrent changes
    apply one after the other and none is lost."""
    sent = changes.model_fields_set
    if "tags" in sent and (changes.add_tags or changes.remove_tags):
        raise SpecError.single("tags", changes.tags, "send the whole set or add_tags/remove_tags, not both")
    if "name" in sent:
        job.name = changes.name
    if "notes" in sent:
        job.notes = changes.notes
    tags = changes.tags if "tags" in sent else job.tags
    tags = [t for t in tags if t not in changes.remove_tags]
    tags += [t for t in changes.add_tags if t not in tags]
    if len(tags) > MAX_TAGS:
        field = "add_tags" if changes.add_tags else "tags"
        raise SpecError.single(field, tags, f"a job has at most {MAX_TAGS} tags; this makes {len(tags)}")
    if tags != job.tags:
        job.tags = tags
    session.flush()
    return job


def queue_position(*, session: Session, job: Job) -> int | None:
    if job.status != JobStatus.QUEUED:
        return None
    return job_state.queue_position(session, job_id=job.id, queue=job.queue)


def request_cancel(*, session: Session, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop (its worker saves a checkpoint and
    records `cancelled`). Each change is conditional on the state it was decided on."""
    if job.status in TERMINAL:
        raise JobConflict(f"job is already {job.status}")
    if job.status == JobStatus.QUEUED:
        cancelled = job_state.cancel_queued(session, job_id=job.id, version=job.version)
        session.refresh(job)
        # Not cancelled: it started (or ended) meanwhile; decide again on the fresh state.
        return job if cancelled else request_cancel(session=session, job=job)
    job_state.request_cancel(session, job_id=job.id)
    session.refresh(job)
    return job


def _error(job: Job) -> JobError | None:
    if job.error_type is None:
        return None
    return JobError(type=ErrorKind(job.error_type), message=job.error_message or "")


def to_public(job: Job, *, position: int | None) -> JobPublic:
    total_steps = job.steps_per_epoch * job.total_epochs if job.steps_per_epoch else None
    fraction = 1.0 if job.status == JobStatus.SUCCEEDED else (job.step / total_steps if total_steps else 0.0)
    return JobPublic(
        id=job.id,
        name=job.name,
        tags=job.tags,
        notes=job.notes,
        status=JobStatus(job.status),
        arch=job.arch,
        spec=job.spec,  # type: ignore[arg-type]
        num_parameters=job.num_parameters,
        estimated_step_flops=job.estimated_step_flops,
        estimated_memory_bytes=job.estimated_memory_bytes,
        queue=job.queue,
        priority=Priority(job.priority),
        queue_position=position,
        attempt=job.attempt,
        max_restarts=job.max_restarts,
        cancel_requested=job.cancel_requested,
        progress=Progress(
            epoch=job.epoch,
            total_epochs=job.total_epochs,
            step=job.step,
            total_steps=total_steps,
            fraction=min(1.0, fraction),
        ),
        latest_metrics=job.latest_metrics,
        objective=job.spec["training"].get("objective"),
        best_metrics=job.best_metrics,
        best_epoch=job.best_epoch,
        best_test_metrics=job.best_test_metrics,
        sweep_id=job.sweep_id,
        trial_number=job.trial_number,
        error=JobError(type=ErrorKind(job.error_type), message=job.error_message or "")
        if job.error_type
        else None,
        created_at=job.created_at,
        started_at=job.started_at,
        attempt_started_at=job.attempt_started_at,
        last_heartbeat_at=job.heartbeat_at,
        worker_host=job.worker_host,
        finished_at=job.finished_at,
        dataset_deleted=job.dataset_id is None and job.spec["dataset"].get("id") is not None,
        parent=parent_of(job),
    )
