"""/v1/jobs: submit, read, list, update, cancel."""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, status
from fastapi.responses import JSONResponse, Response

from app.api.deletion import delete_job
from app.api.deps import CeleryDep, OwnerDep, SessionDep
from app.api.idempotency import request_hash, run_route_once
from app.api.job_lists import list_jobs
from app.api.job_reads import RecentJobReads
from app.api.jobs import (
    create_job,
    get_job,
    queue_position,
    request_cancel,
    to_public,
    update_job,
)
from app.api.lineage import lineage
from app.api.schemas import JobCreate, JobListQuery, JobPublic, JobsPublic, JobUpdate, LineagePublic
from app.api.usage import BYTES_PER_PARAMETER, ensure_room
from app.core.queue import publish_job
from app.db.space import reclaim_space

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
log = logging.getLogger("nnforge.api")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={409: {"description": "the same Idempotency-Key is still in flight"}},
)
def submit_job(
    job_in: JobCreate,
    request: Request,
    session: SessionDep,
    celery: CeleryDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Validate and dry-check the spec, store the job as queued, then wake a worker. With an
    `Idempotency-Key`, a retry of the same request returns the first response and creates nothing."""

    def create() -> tuple[int, Any, dict[str, str]]:
        job = create_job(session=session, job_in=job_in, owner=owner, limits=request.app.state.settings)
        ensure_room(
            session=session,
            owner=owner,
            limit=request.app.state.settings.max_storage_bytes_per_owner,
            adding=BYTES_PER_PARAMETER * job.num_parameters,
            what=f"a job of {job.num_parameters:,} parameters (a checkpoint holds 4 bytes for each)",
        )
        public = to_public(job, position=queue_position(session=session, job=job))
        return 202, public.model_dump(mode="json"), {"Location": f"/v1/jobs/{job.id}"}

    # The row is the truth: it commits (with the idempotency record) before the message goes out.
    fingerprint = request_hash(job_in.model_dump_json().encode())
    result = run_route_once(
        request, session, owner=owner, key=idempotency_key, fingerprint=fingerprint, produce=create
    )
    job_id, queue = result.body["id"], result.body["queue"]
    if not result.replayed:
        try:
            publish_job(celery, job_id, queue)
        except Exception:  # the job stays queued; the reconciler re-sends what the broker lacks
            log.exception("job %s stored but not yet sent to the broker", job_id)
    return result.response()


@router.get("", response_model=JobsPublic)
def list_all_jobs(
    session: SessionDep, owner: OwnerDep, query: Annotated[JobListQuery, Query()]
) -> JobsPublic:
    """The jobs that pass every filter given, newest first unless `sort` says otherwise; follow
    `next_cursor` for the next page (with the same sort)."""
    page = list_jobs(session=session, owner=owner, query=query)
    return JobsPublic(
        items=[to_public(job, position=None) for job in page.jobs], next_cursor=page.next_cursor
    )


@router.get("/{job_id}", response_model=JobPublic)
async def read_job(job_id: str, request: Request, owner: OwnerDep) -> Response:
    """The job as of at most STATUS_CACHE_SECONDS ago (app/job_reads.py): the most polled route."""
    reads: RecentJobReads = request.app.state.job_reads

    def read() -> bytes:  # in a worker thread: the whole read and the JSON
        with request.app.state.session_factory() as session:
            job = get_job(session=session, job_id=job_id, owner=owner)
            public = to_public(job, position=queue_position(session=session, job=job))
            return public.model_dump_json().encode()

    body = await reads.read(job_id, owner, read)
    return Response(body, media_type="application/json")


@router.get("/{job_id}/lineage", response_model=LineagePublic)
def read_lineage(job_id: str, session: SessionDep, owner: OwnerDep) -> LineagePublic:
    """The jobs this one started from (init_from), its parent first, and those started from it."""
    return lineage(session=session, job=get_job(session=session, job_id=job_id, owner=owner))


@router.patch("/{job_id}", response_model=JobPublic)
def patch_job(
    job_id: str, changes: JobUpdate, request: Request, session: SessionDep, owner: OwnerDep
) -> JobPublic:
    """Change a job's name, notes or tags, in any status; the fields not sent stay as they are."""
    job = get_job(session=session, job_id=job_id, owner=owner, lock=True)
    job = update_job(session=session, job=job, changes=changes)
    session.commit()
    request.app.state.job_reads.forget(job_id)
    return to_public(job, position=queue_position(session=session, job=job))


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def cancel_job(job_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> JobPublic:
    """A queued job ends at once; a running one stops within a step plus a heartbeat, keeping a checkpoint."""
    job = request_cancel(session=session, job=get_job(session=session, job_id=job_id, owner=owner))
    session.commit()
    request.app.state.job_reads.forget(job_id)
    return to_public(job, position=None)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def remove_job(
    job_id: str, request: Request, session: SessionDep, owner: OwnerDep, background: BackgroundTasks
) -> Response:
    """Delete a finished job and everything it stored: metrics, log lines, samples, checkpoints and the
    Idempotency-Key record of its POST. 409 while it is queued or running: cancel it first."""
    delete_job(session=session, job_id=job_id, owner=owner)
    session.commit()
    request.app.state.job_reads.forget(job_id)
    background.add_task(reclaim_space, request.app.state.session_factory)  # after the answer is sent
    return Response(status_code=status.HTTP_204_NO_CONTENT)
