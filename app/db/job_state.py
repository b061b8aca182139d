"""A job's life, in one place: its statuses, every change of its state and the rule that allows each, and
the read of its newest verified checkpoint; and the fair order in which claims take queued jobs.

Each change is one conditional UPDATE. A change made by the job's runner is fenced by its lease token (unique
per attempt), so a runner that lost its job can no longer change it; a change made by the API or the
reconciler is conditional on the status (and version) it was decided on, so two deciders never both win.
`TRANSITIONS` lists them for docs/job-states.md, which a test keeps equal to `transitions_table()`.

A broker message names a job but only wakes a worker for the message's queue: the claim takes the fairest
queued job of that queue, whichever job the message named. Every job that becomes queued sends one message
(POST, hand back, settling a lost run), each claim takes at most one job, and a queued job leaves the queue
only by a claim or a cancel: so a queue holds at least as many messages as queued jobs, and each message
starts exactly one job while one is claimable. When none is (every waiting owner is at its running limit),
the message is spent and the reconciler sends the queue's jobs again once it holds fewer messages than jobs.
"""

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, null, select, update
from sqlalchemy.orm import Session, aliased, undefer

from app.db.base import UTCDateTime, utcnow
from app.db.clock import db_now
from app.db.locks import lock_claims
from app.db.tables import Checkpoint, Job


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a sweep's trial its pruner stopped early (it keeps its metrics and checkpoints)


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PRUNED})


class Priority(StrEnum):
    """Orders an owner's own queued jobs (high first); never one owner's jobs before another's turn."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class ErrorKind(StrEnum):
    """Why a job ended other than succeeded, or why its last attempt was handed back."""

    SPEC_ERROR = "spec_error"
    DIVERGED = "diverged"  # the training loss stayed non-finite (training.max_nonfinite_steps)
    OUT_OF_MEMORY = "out_of_memory"  # an allocation failed (MAX_JOB_MEMORY_BYTES, the GPU) or an OOM kill
    WORKER_LOST = "worker_lost"
    TIMEOUT = "timeout"  # past MAX_JOB_SECONDS, or a step past MAX_STEP_SECONDS
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    NO_SPACE = "no_space"  # the database's disk stayed full for DB_OUTAGE_SECONDS


class LeaseLost(RuntimeError):
    """Another runner owns the job now; this one must stop without writing."""


class CheckpointCorrupted(RuntimeError):
    """A checkpoint's bytes do not match the sha256 stored with them."""


@dataclass(frozen=True)
class Transition:
    name: str
    source: str
    target: str
    by: str
    guard: str


# The whole state machine. Terminal statuses never change.
TRANSITIONS = (
    Transition("claim", "queued", "running", "training process (woken by any message of the job's queue)",
               "queued; the fairest such job of the queue: its owner runs the fewest jobs (and fewer than "
               "MAX_RUNNING_JOBS_PER_OWNER), then started one least recently, then priority, then age; "
               "claims are serialised, so the limit holds exactly; takes a new lease, attempt + 1 "
               "(started_at only the first time)"),
    Transition("renew_lease", "running", "running", "lease keeper (training process)", "holds the lease"),
    Transition("record_progress", "running", "running", "training hook", "holds the lease"),
    Transition("finish", "running", "succeeded · failed · cancelled · pruned", "training process, supervisor",
               "holds the lease; pruned: a sweep's trial its pruner stopped (workers/sweep_pruning.py)"),
    Transition("hand_back", "running", "queued", "training process (warm shutdown)", "holds the lease"),
    Transition("settle_lost_run", "running", "queued · failed", "supervisor (the training process died)",
               "holds the lease; queued while attempts are left (attempt ≤ max_restarts), else failed"),
    Transition("take_back_lapsed", "running", "queued · failed", "reconciler",
               "no heartbeat for LEASE_SECONDS and version unchanged; queued while attempts are left"),
    Transition("cancel_queued", "queued", "cancelled", "API (POST …/cancel)", "queued, version unchanged"),
    Transition("request_cancel", "running", "running (cancel_requested)", "API (POST …/cancel)",
               "running; the runner sees it at its next heartbeat and finishes as cancelled (or, after "
               "CANCEL_GRACE_SECONDS, the supervisor stops the process and does)"),
    Transition("release_dataset", "succeeded · failed · cancelled · pruned", "unchanged (dataset_id NULL)",
               "API (DELETE /v1/datasets/{id})", "finished; a queued or running user refuses the delete"),
)  # fmt: skip


def transitions_table() -> str:
    """TRANSITIONS as the Markdown table in docs/job-states.md."""
    rows = ["| transition | from | to | by | guard |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{t.name}` | {t.source} | {t.target} | {t.by} | {t.guard} |" for t in TRANSITIONS]
    return "\n".join(rows) + "\n"


# The attempts-left rule, as SQL so that it is decided in the same statement that acts on it.
ATTEMPTS_LEFT: ColumnElement[bool] = Job.attempt <= Job.max_restarts


def _leased(job_id: str, token: str) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.lease_owner == token, Job.status == JobStatus.RUNNING)


@dataclass(frozen=True)
class _FairOrder:
    """A queue's queued jobs (`candidates`: rows of `job`, an alias of Job) in the order claims take them."""

    job: Any
    candidates: Select[Any]
    owner_running: ColumnElement[int]
    order: tuple[Any, ...]  # ORDER BY terms


def _fair_order(queue: str) -> _FairOrder:
    """First the owner running the fewest jobs; among those, the one that started a job least recently
    (never first): with every slot busy the running counts tie at each claim, and this turns the tie into
    turns, so an owner with two jobs waits behind at most one job of an owner with twenty. Then the owner's
    own order: priority, then age (a requeued job is old, so it resumes first)."""
    job, running_job, served_job = aliased(Job), aliased(Job), aliased(Job)
    running = (
        select(running_job.owner, func.count().label("jobs"))
        .where(running_job.status == JobStatus.RUNNING)
        .group_by(running_job.owner)
        .subquery()
    )
    owner_running = func.coalesce(running.c.jobs, 0)
    last_start = (
        select(func.max(served_job.attempt_started_at)).where(served_job.owner == job.owner).scalar_subquery()
    )  # one lookup in ix_job_owner_attempt_started per queued job
    rank = case({Priority.HIGH.value: 0, Priority.NORMAL.value: 1}, value=job.priority, else_=2)
    candidates = (
        select(job.id)
        .outerjoin(running, running.c.owner == job.owner)
        .where(job.status == JobStatus.QUEUED, job.queue == queue)
    )
    order = (owner_running, last_start.asc().nulls_first(), rank, job.created_at, job.id)
    return _FairOrder(job, candidates, owner_running, order)


def claim(
    session: Session, *, queue: str, token: str, max_running_per_owner: int, host: str | None = None
) -> Job | None:
    """Start the fairest claimable job of `queue` (see `_fair_order`), whichever job the message that woke
    the worker named; None when no queued job's owner runs fewer than `max_running_per_owner` jobs. `host`:
    the worker host that runs it (the job's `worker_host`)."""
    # Serialised: running counts rise only through claims, so no two claims admit the same owner's last
    # free slot, and each claim sees the turns the claims before it took.
    lock_claims(session)
    fair, now = _fair_order(queue), utcnow()
    pick = (
        fair.candidates.where(fair.owner_running < max_running_per_owner)
        .order_by(*fair.order)
        .limit(1)
        .with_for_update(of=fair.job)  # waits out a cancel or a PATCH of that row, then reads it again
        .scalar_subquery()
    )
    job_id = session.scalar(
        update(Job)
        .where(Job.id == pick, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.RUNNING,
            attempt=Job.attempt + 1,
            version=Job.version + 1,
            lease_owner=token,
            worker_host=host,
            heartbeat_at=db_now(),  # leases run on the database's clock (app/db/clock.py)
            started_at=func.coalesce(Job.started_at, literal(now, UTCDateTime())),
            attempt_started_at=now,
        )
        .returning(Job.id)
    )
    return session.get_one(Job, job_id, populate_existing=True) if job_id is not None else None


def queue_position(session: Session, *, job_id: str, queue: str) -> int | None:
    """How many of the queue's queued jobs a claim would take before this one, as things stand now (0:
    next); None when it is not queued."""
    fair = _fair_order(queue)
    ranked = fair.candidates.add_columns(func.row_number().over(order_by=fair.order).label("rank")).subquery()
    rank = session.scalar(select(ranked.c.rank).where(ranked.c.id == job_id))
    return None if rank is None else rank - 1


def leased_by(session: Session, *, token: str) -> Job | None:
    """The running job whose lease is `token`: what a claim with it took, while the lease holds."""
    return session.scalars(
        select(Job).where(Job.status == JobStatus.RUNNING, Job.lease_owner == token)
    ).first()


def renew_lease(session: Session, *, job_id: str, token: str) -> bool:
    """Returns whether cancel is requested; raises LeaseLost when the lease is gone."""
    owned = session.execute(
        update(Job)
        .where(_leased(job_id, token))
        .values(heartbeat_at=db_now())
        .returning(Job.cancel_requested)
    ).first()
    if owned is None:
        raise LeaseLost(job_id)
    return bool(owned[0])


def record_progress(session: Session, *, job_id: str, token: str, progress: dict[str, Any]) -> None:
    """The job's progress columns (epoch, step, metrics, samples) and a heartbeat; raises LeaseLost."""
    owned = session.execute(
        update(Job).where(_leased(job_id, token)).values(heartbeat_at=db_now(), **progress)
    )
    if owned.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(job_id)


def assert_lease(session: Session, *, job_id: str, token: str) -> None:
    """Lock the job's row and check the lease, for writes to other tables in the same transaction."""
    owner = session.scalar(select(Job.lease_owner).where(Job.id == job_id).with_for_update())
    if owner != token:
        raise LeaseLost(job_id)


def is_current_attempt(session: Session, *, job_id: str, attempt: int) -> bool:
    """Whether `attempt` is still the job's latest, with the row locked against a claim until the
    transaction ends: a runner's log lines are written only then, so a stale runner (its lease taken back,
    another attempt running) adds none."""
    latest = session.scalar(select(Job.attempt).where(Job.id == job_id).with_for_update(read=True))
    return latest == attempt


def finish(
    session: Session,
    *,
    job_id: str,
    token: str,
    status: JobStatus,
    error_type: ErrorKind | None = None,
    error_message: str | None = None,
) -> bool:
    """Record a terminal status; False when this runner no longer owns the job."""
    assert status in TERMINAL, status
    done = session.execute(
        update(Job)
        .where(_leased(job_id, token))
        .values(
            status=status,
            version=Job.version + 1,
            finished_at=utcnow(),
            error_type=error_type,
            error_message=error_message,
            lease_owner=None,
        )
    )
    return done.rowcount == 1  # type: ignore[attr-defined]


def hand_back(session: Session, *, job_id: str, token: str) -> str | None:
    """Back to the queue (a warm shutdown); the next attempt resumes from the newest checkpoint. Returns the
    job's queue, to send it again, or None when this runner no longer owns the job."""
    return session.scalar(
        update(Job)
        .where(_leased(job_id, token))
        .values(
            status=JobStatus.QUEUED,
            version=Job.version + 1,
            lease_owner=None,
            error_type=None,
            error_message=None,
        )
        .returning(Job.queue)
    )


@dataclass(frozen=True)
class Settled:
    """A lost run after settling: requeued (send `queue` a message again) or failed."""

    job_id: str
    status: JobStatus
    queue: str
    attempt: int


def _settle(session: Session, where: ColumnElement[bool], message: str) -> Settled | None:
    row = session.execute(
        update(Job)
        .where(where)
        .values(
            status=case((ATTEMPTS_LEFT, JobStatus.QUEUED.value), else_=JobStatus.FAILED.value),
            finished_at=case((ATTEMPTS_LEFT, null()), else_=literal(utcnow(), UTCDateTime())),
            version=Job.version + 1,
            lease_owner=None,
            error_type=ErrorKind.WORKER_LOST,
            error_message=message,
        )
        .returning(Job.id, Job.status, Job.queue, Job.attempt)
    ).first()
    return Settled(row[0], JobStatus(row[1]), row[2], row[3]) if row is not None else None


def settle_lost_run(session: Session, *, job_id: str, token: str, message: str) -> Settled | None:
    """The runner's training process died: queued again while attempts are left, else failed."""
    return _settle(session, _leased(job_id, token), message)


def lapsed_jobs(session: Session, *, lease_seconds: float) -> list[tuple[str, int]]:
    """(id, version) of running jobs with no heartbeat for `lease_seconds` by the database's clock (as
    heartbeats are stamped): their runner is gone. A reconciler's own clock plays no part."""
    rows = session.execute(
        select(Job.id, Job.version).where(
            Job.status == JobStatus.RUNNING, Job.heartbeat_at < db_now(-lease_seconds)
        )
    )
    return [(job_id, version) for job_id, version in rows]


def take_back_lapsed(session: Session, *, job_id: str, version: int, message: str) -> Settled | None:
    """A lapsed lease, as seen at `version`: queued again while attempts are left, else failed. None when
    the job moved on meanwhile (it finished, or another reconciler took it)."""
    return _settle(
        session, and_(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.version == version), message
    )


def cancel_queued(session: Session, *, job_id: str, version: int) -> bool:
    """Cancel a job still queued at `version`; False when it started (or ended) meanwhile."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.version == version)
        .values(
            status=JobStatus.CANCELLED,
            version=Job.version + 1,
            cancel_requested=True,
            finished_at=utcnow(),
            error_type=ErrorKind.CANCELLED,
            error_message="cancelled while queued",
        )
    )
    return done.rowcount == 1  # type: ignore[attr-defined]


def request_cancel(session: Session, *, job_id: str) -> None:
    """Ask a running job to stop; its runner finishes it as cancelled (keeping a checkpoint)."""
    session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(cancel_requested=True)
    )


def newest_checkpoint(session: Session, *, job_id: str) -> Checkpoint | None:
    """The job's newest resumable checkpoint, bytes loaded (verify them with `verified_bytes`)."""
    return session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.resumable)
        .options(undefer(Checkpoint.data))
        .order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
        .limit(1)
    ).first()


def verified_bytes(checkpoint: Checkpoint) -> bytes:
    if hashlib.sha256(checkpoint.data).hexdigest() != checkpoint.sha256:
        raise CheckpointCorrupted(
            f"checkpoint {checkpoint.id} of job {checkpoint.job_id} fails its sha256 check"
        )
    return checkpoint.data


def release_dataset(session: Session, *, dataset_id: str) -> list[str]:
    """Finished jobs forget an upload that is being deleted (dataset_id := NULL, as ON DELETE SET NULL would);
    their spec still names it, so they read back as `dataset_deleted`. Returns their ids."""
    return list(
        session.scalars(
            update(Job)
            .where(Job.dataset_id == dataset_id, Job.status.in_(TERMINAL))
            .values(dataset_id=None)
            .returning(Job.id)
        )
    )
