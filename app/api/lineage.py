"""Which job a job started from (`init_from`) and which started from it: the parent resolved and checked at
POST, a job's children, its lineage. A parent is always one of the owner's own jobs; another owner's job
reads exactly as one that does not exist."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.checkpoints import find_checkpoint
from app.api.schemas import LineageJob, LineagePublic, ParentPublic
from app.core import child_process
from app.core.settings import Settings
from app.db.job_state import JobStatus, verified_bytes
from app.db.tables import Job
from models.dataset_info import DatasetInfo
from models.errors import SpecError
from models.specs import JobSpec

MAX_LINEAGE_JOBS = 500  # ancestors, and descendants, one lineage read returns (README limits)
child_process.preload("app.api.init_from_child")


@dataclass(frozen=True)
class Parent:
    job_id: str
    checkpoint_id: int


def resolve_parent(
    *, session: Session, spec: JobSpec, info: DatasetInfo, owner: str, settings: Settings
) -> Parent:
    """The owner's job `spec.init_from.job` names (an id or a unique prefix) and its checkpoint, after
    loading that checkpoint's weights into the new network on paper (models.transfer.check_compatible, in a
    child process under the dry run's bounds): SpecError (422) names each layer that does not fit, with
    both shapes. The parent's row stays locked until the caller commits, so it cannot be deleted before its
    child exists."""
    init = spec.init_from
    assert init is not None
    prefix = init.job.lower()
    found = list(
        session.scalars(
            select(Job).where(Job.owner == owner, Job.id.like(f"{prefix}%")).limit(2).with_for_update()
        )
    )
    if not found:
        raise SpecError.single("init_from.job", init.job, "no job of yours has this id or id prefix")
    if len(found) > 1:
        raise SpecError.single(
            "init_from.job", init.job, f"several of your jobs start with it ({found[0].id}, {found[1].id}, …)"
        )
    job = found[0]
    checkpoint = find_checkpoint(session=session, job=job, which=str(init.checkpoint))
    if checkpoint is None:
        raise SpecError.single(
            "init_from.checkpoint",
            init.checkpoint,
            f"job {job.id} ({job.status}) has no such checkpoint"
            + (" yet" if init.checkpoint in ("best", "latest") else ""),
        )
    _check_in_child(spec, info, verified_bytes(checkpoint), settings)
    return Parent(job.id, checkpoint.id)


def _check_in_child(spec: JobSpec, info: DatasetInfo, checkpoint: bytes, settings: Settings) -> None:
    busy = f"{settings.max_concurrent_dry_runs} dry runs are under way in this API process; retry shortly"
    with child_process.slot(
        "dry run", settings.max_concurrent_dry_runs, wait=settings.dry_run_timeout_seconds, message=busy
    ):
        try:
            child_process.call(
                "app.api.init_from_child:check_parent",
                spec.model_dump(mode="json"),
                info.model_dump(mode="json"),
                checkpoint,
                memory_bytes=settings.dry_run_memory_bytes,
                timeout_seconds=settings.dry_run_timeout_seconds,
            )
        except child_process.ChildFailed as failure:
            reason = f"loading the parent's checkpoint into this network failed ({failure.kind}: {failure})"
            raise SpecError.single("init_from", spec.model_dump()["init_from"], reason) from None


def parent_of(job: Job) -> ParentPublic | None:
    if job.parent_job_id is None or job.parent_checkpoint_id is None:
        return None
    init = job.spec.get("init_from") or {}
    return ParentPublic(
        job_id=job.parent_job_id,
        checkpoint_id=job.parent_checkpoint_id,
        load=init.get("load", "all"),
        freeze=init.get("freeze", "none"),
    )


def children_ids(session: Session, *, owner: str, job_ids: list[str], limit: int) -> list[str]:
    """Up to `limit` ids of the owner's jobs that started from any of `job_ids`, oldest first."""
    query = (
        select(Job.id)
        .where(Job.owner == owner, Job.parent_job_id.in_(job_ids))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def _entry(job: Job) -> LineageJob:
    return LineageJob(
        id=job.id,
        name=job.name,
        status=JobStatus(job.status),
        arch=job.arch,
        created_at=job.created_at,
        parent=parent_of(job),
    )


def lineage(*, session: Session, job: Job, limit: int = MAX_LINEAGE_JOBS) -> LineagePublic:
    """The job's ancestors (its parent first) and descendants (breadth first, each naming its parent), up
    to `limit` of each; `truncated` says that more exist."""
    ancestors: list[LineageJob] = []
    at, more_ancestors, more_descendants = job, False, False
    while at.parent_job_id is not None:
        if len(ancestors) == limit:
            more_ancestors = True
            break
        parent = session.get(Job, at.parent_job_id)
        if parent is None or parent.owner != job.owner:
            break
        ancestors.append(_entry(parent))
        at = parent
    descendants: list[LineageJob] = []
    frontier = [job.id]
    while frontier and not more_descendants:
        room = limit - len(descendants)
        ids = children_ids(session, owner=job.owner, job_ids=frontier, limit=room + 1)
        more_descendants = len(ids) > room
        rows = session.scalars(select(Job).where(Job.id.in_(ids[:room])).order_by(Job.created_at, Job.id))
        children = list(rows)
        descendants += [_entry(child) for child in children]
        frontier = [child.id for child in children]
    truncated = more_ancestors or more_descendants
    return LineagePublic(job=_entry(job), ancestors=ancestors, descendants=descendants, truncated=truncated)
