"""/v1/jobs/{id}/logs: the worker's log lines for one job (start, device, epochs, warnings, tracebacks)."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import OwnerDep, SessionDep
from app.api.job_log_reads import read_log_lines
from app.api.jobs import get_job
from app.api.live_schemas import LogsPublic

router = APIRouter(prefix="/v1/jobs", tags=["logs"])
MAX_LINES = 5000


@router.get("/{job_id}/logs", response_model=LogsPublic)
def read_logs(
    job_id: str,
    session: SessionDep,
    owner: OwnerDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="only lines with an id above this (a next_after)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LINES)] = 1000,
) -> LogsPublic:
    """Oldest first. To follow a running job, pass the previous answer's `next_after` until `status` is
    terminal and `items` comes back empty."""
    job = get_job(session=session, job_id=job_id, owner=owner)
    lines = read_log_lines(session=session, job_id=job_id, after=after, limit=limit)
    return LogsPublic(
        job_id=job_id,
        status=job.status,  # type: ignore[arg-type]
        items=lines,
        next_after=lines[-1].id if lines else after,
    )
