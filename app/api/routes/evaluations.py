"""/v1/jobs/{id}/evaluations: ask for a report, a robustness curve or attributions of a checkpoint."""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, status
from fastapi.responses import JSONResponse

from app.api.deps import CeleryDep, OwnerDep, SessionDep
from app.api.evaluations import (
    EvaluationPublic,
    EvaluationsPublic,
    create_evaluation,
    get_evaluation,
    to_public,
)
from app.api.idempotency import request_hash, run_route_once
from app.api.jobs import get_job
from app.core.queue import publish_evaluation
from app.db.evaluations import list_evaluations
from models.evaluate.params import EvaluationCreate, parse_params

router = APIRouter(prefix="/v1/jobs", tags=["evaluations"])
log = logging.getLogger("nnforge.api")


@router.post(
    "/{job_id}/evaluations",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EvaluationPublic,
    responses={409: {"description": "no such checkpoint yet, or the same Idempotency-Key is in flight"}},
)
def submit_evaluation(
    job_id: str,
    body: Annotated[EvaluationCreate, Body()],
    request: Request,
    session: SessionDep,
    celery: CeleryDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Queue an evaluation of one checkpoint (default: best) on one split (default: test); a worker of the
    job's queue runs it. With an `Idempotency-Key`, a retry returns the first response."""

    queues: list[str] = []  # the job's, to send the message to once the row is committed

    def create() -> tuple[int, Any, dict[str, str]]:
        job = get_job(session=session, job_id=job_id, owner=owner)
        queues.append(job.queue)
        evaluation = create_evaluation(
            session=session,
            job=job,
            owner=owner,
            kind=body.kind,
            checkpoint=body.checkpoint,
            split=body.split,
            params=parse_params(body.kind, body.params).model_dump(mode="json"),
        )
        location = f"/v1/jobs/{job.id}/evaluations/{evaluation.id}"
        return 202, to_public(evaluation).model_dump(mode="json"), {"Location": location}

    fingerprint = request_hash(job_id.encode(), body.model_dump_json().encode())
    result = run_route_once(
        request, session, owner=owner, key=idempotency_key, fingerprint=fingerprint, produce=create
    )
    if not result.replayed:
        try:
            publish_evaluation(celery, result.body["id"], queues[0])
        except Exception:  # it stays queued; a new POST (without the key) asks again
            log.exception("evaluation %s stored but not sent to the broker", result.body["id"])
    return result.response()


@router.get("/{job_id}/evaluations", response_model=EvaluationsPublic)
def read_evaluations(job_id: str, session: SessionDep, owner: OwnerDep) -> EvaluationsPublic:
    """The job's evaluations, oldest first, with their results."""
    job = get_job(session=session, job_id=job_id, owner=owner)
    return EvaluationsPublic(items=[to_public(e) for e in list_evaluations(session, job_id=job.id)])


@router.get("/{job_id}/evaluations/{evaluation_id}", response_model=EvaluationPublic)
def read_evaluation(
    job_id: str, evaluation_id: str, session: SessionDep, owner: OwnerDep
) -> EvaluationPublic:
    job = get_job(session=session, job_id=job_id, owner=owner)
    return to_public(get_evaluation(session=session, job=job, evaluation_id=evaluation_id))
