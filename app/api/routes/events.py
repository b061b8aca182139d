"""/v1/jobs/{id}/events: the job's status, progress and metric points as server-sent events, live."""

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import OwnerDep, SessionDep
from app.api.job_events import Snapshot, StreamTiming, job_events, read_snapshot
from app.api.jobs import get_job

router = APIRouter(prefix="/v1/jobs", tags=["events"])


def owned_job_id(job_id: str, session: SessionDep, owner: OwnerDep) -> str:
    """404 before the stream starts. The request's session is closed here: a stream can last hours, and it
    must not hold a pooled connection (idle in a transaction) all that time."""
    get_job(session=session, job_id=job_id, owner=owner)
    session.close()
    return job_id


def _read(request: Request, job_id: str, after_id: int) -> Snapshot:
    with request.app.state.session_factory() as session:
        return read_snapshot(session=session, job_id=job_id, after_id=after_id)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"description": "event: status | progress | metrics | end; id: last metric row"}},
)
async def stream_events(
    request: Request,
    job_id: Annotated[str, Depends(owned_job_id)],
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", pattern=r"^\d{1,18}$", description="resume after this event id"),
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Starts with the job's `status` and `progress`, then sends `metrics` as rows are written, and `end`
    (then closes) when the job is over. Comments keep a quiet connection alive."""
    timing: StreamTiming = getattr(request.app.state, "event_timing", StreamTiming())
    async for event in job_events(
        partial(_read, request, job_id), after_id=int(last_event_id or 0), timing=timing
    ):
        yield event
