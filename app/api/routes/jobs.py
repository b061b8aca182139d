"""/v1/jobs: submit, read, list, cancel."""

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CeleryDep, OwnerDep, SessionDep
from app.jobs import (
    MAX_PAGE_SIZE,
    create_job,
    get_job,
    list_jobs,
    queue_position,
    request_cancel,
    to_public,
)
from app.queue import publish_job
from app.schemas import JobCreate, JobPublic, JobsPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = logging.getLogger("nnforge.api")


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def submit_job(job_in: JobCreate, session: SessionDep, celery: CeleryDep, owner: OwnerDep,
               response: Response) -> JobPublic:
    """Validate and dry-check the spec, store the job as queued, then wake a worker."""
    job = create_job(session=session, job_in=job_in, owner=owner)
    session.commit()  # the row is the truth: commit before the message goes out
    try:
        publish_job(celery, job.id, job.queue)
    except Exception:  # the job stays queued in the database; the broker's outage is not the user's error
        log.exception("job %s stored but not yet sent to the broker", job.id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return to_public(job, position=queue_position(session=session, job=job))


@router.get("", response_model=JobsPublic)
def list_all_jobs(
    session: SessionDep, owner: OwnerDep,
    status_: Annotated[Literal["queued", "running", "succeeded", "failed", "cancelled"] | None,
                       Query(alias="status")] = None,
    arch: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobsPublic:
    """Newest first; follow `next_cursor` for older jobs."""
    page = list_jobs(session=session, owner=owner, status=status_, arch=arch, limit=limit, cursor=cursor)
    return JobsPublic(items=[to_public(job, position=None) for job in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobPublic)
def read_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobPublic:
    job = get_job(session=session, job_id=job_id, owner=owner)
    return to_public(job, position=queue_position(session=session, job=job))


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobPublic:
    """A queued job ends at once; a running one stops within a step plus a heartbeat, keeping a checkpoint."""
    job = request_cancel(session=session, job=get_job(session=session, job_id=job_id, owner=owner))
    session.commit()
    return to_public(job, position=None)
