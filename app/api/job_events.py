"""The live event stream of a job, read from the database alone (the worker writes, the API polls).

Event ids are metric-row ids: `id: N` means "every metric row up to N has been sent". A client that
reconnects with `Last-Event-ID: N` first gets the job's current status and progress again (they are
snapshots), then only the metric rows after N. Metric rows of one job are written by one process at a
time in id order, so "id > N" misses none.
"""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.to_thread import run_sync
from fastapi.sse import ServerSentEvent
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.jobs import to_public
from app.api.live_schemas import EndEvent, MetricEventPoint, MetricsEvent, ProgressEvent
from app.api.schemas import JobPublic
from app.db.job_state import TERMINAL
from app.db.tables import Job, Metric

BATCH_ROWS = 1000  # metric rows per `metrics` event
RETRY_MS = 2000  # how long a browser waits before it reconnects


@dataclass(frozen=True)
class StreamTiming:
    poll_seconds: float = 0.5
    keepalive_seconds: float = 10.0  # proxies drop connections that stay silent for long


@dataclass(frozen=True)
class Snapshot:
    job: JobPublic
    points: list[MetricEventPoint]
    last_id: int


def read_snapshot(*, session: Session, job_id: str, after_id: int) -> Snapshot:
    """The job, then its metric rows after `after_id`: reading the job first means a terminal status seen
    here comes with every row written before it."""
    job = to_public(session.get_one(Job, job_id), position=None)
    columns = (Metric.id, Metric.name, Metric.step, Metric.epoch, Metric.value, Metric.time)
    rows = session.execute(
        select(*columns)
        .where(Metric.job_id == job_id, Metric.id > after_id)
        .order_by(Metric.id)
        .limit(BATCH_ROWS)
    ).all()
    points = [
        MetricEventPoint(name=r.name, step=r.step, epoch=r.epoch, value=r.value, time=r.time) for r in rows
    ]
    return Snapshot(job, points, rows[-1].id if rows else after_id)


def _status_key(job: JobPublic) -> tuple[Any, ...]:
    return job.status, job.attempt, job.cancel_requested, job.error


def _progress_key(job: JobPublic) -> tuple[Any, ...]:
    return job.progress.step, job.progress.epoch, job.best_epoch


async def job_events(
    read: Callable[[int], Snapshot], *, after_id: int, timing: StreamTiming
) -> AsyncIterator[ServerSentEvent]:
    """`status` (the whole job) when its status changes, `progress` when it moves, `metrics` with new
    rows, and `end` once the job is over and drained. `read(after_id)` runs in a worker thread, so a
    waiting stream holds neither a thread nor a database connection."""
    cursor = after_id
    status_seen: tuple[Any, ...] | None = None
    progress_seen: tuple[Any, ...] | None = None
    quiet_since = anyio.current_time()
    yield ServerSentEvent(comment="nnforge job events", retry=RETRY_MS)
    while True:
        snapshot = await run_sync(read, cursor)
        job, sent = snapshot.job, False
        if _status_key(job) != status_seen:
            status_seen, sent = _status_key(job), True
            yield ServerSentEvent(event="status", id=str(cursor), data=job)
        if _progress_key(job) != progress_seen:
            progress_seen, sent = _progress_key(job), True
            yield ServerSentEvent(
                event="progress",
                id=str(cursor),
                data=ProgressEvent(
                    progress=job.progress,
                    latest_metrics=job.latest_metrics,
                    best_metrics=job.best_metrics,
                    best_epoch=job.best_epoch,
                ),
            )
        if snapshot.points:
            cursor, sent = snapshot.last_id, True
            yield ServerSentEvent(event="metrics", id=str(cursor), data=MetricsEvent(points=snapshot.points))
        if job.status in TERMINAL and len(snapshot.points) < BATCH_ROWS:
            yield ServerSentEvent(
                event="end",
                id=str(cursor),
                data=EndEvent(status=job.status, error=job.error.type if job.error else None),
            )
            return
        now = anyio.current_time()
        if sent:
            quiet_since = now
        elif now - quiet_since >= timing.keepalive_seconds:
            quiet_since = now
            yield ServerSentEvent(comment="keep-alive")
        if len(snapshot.points) < BATCH_ROWS:  # a full batch means more rows are waiting: read on at once
            await anyio.sleep(timing.poll_seconds)
