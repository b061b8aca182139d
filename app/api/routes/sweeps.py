"""/v1/sweeps: submit, read, list, trials, cancel. A sweep's trials are jobs (GET /v1/jobs?sweep_id=…)."""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, status
from fastapi.responses import JSONResponse

from app.api.deps import CeleryDep, OwnerDep, SessionDep
from app.api.idempotency import request_hash, run_route_once
from app.api.sweep_schemas import SweepListQuery, SweepPublic, SweepsPublic, TrialsPublic, TrialsQuery
from app.api.sweeps import (
    cancel,
    create_sweep,
    get_sweep,
    list_sweeps,
    read_sweep,
    sorted_trials,
)
from app.core.queue import publish_sweep
from app.db.sweeps import trials_of
from models.sweep_space import parse_sweep

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
log = logging.getLogger("nnforge.api")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepPublic,
    responses={409: {"description": "the same Idempotency-Key is still in flight"}},
)
def submit_sweep(
    body: Annotated[dict[str, Any], Body(description="models.sweep_space.SweepSpec: name, base, space, …")],
    request: Request,
    session: SessionDep,
    celery: CeleryDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Check the space's corners like POSTed jobs, store the sweep, then ask a worker for its driver's first
    pass (which queues up to `parallel` trials). With an `Idempotency-Key`, a retry returns the first
    response and creates nothing."""

    sweep_in = parse_sweep(body)

    def create() -> tuple[int, Any, dict[str, str]]:
        settings = request.app.state.settings
        sweep = create_sweep(session=session, sweep_in=sweep_in, owner=owner, settings=settings)
        body = read_sweep(session, sweep).model_dump(mode="json")
        return 202, body, {"Location": f"/v1/sweeps/{sweep.id}"}

    fingerprint = request_hash(sweep_in.model_dump_json().encode())
    result = run_route_once(
        request, session, owner=owner, key=idempotency_key, fingerprint=fingerprint, produce=create
    )
    sweep_id = result.body["id"]
    if not result.replayed:
        try:
            publish_sweep(celery, sweep_id, get_sweep(session=session, sweep_id=sweep_id, owner=owner).queue)
        except Exception:  # stored; the reconciler sends the sweep to a worker
            log.exception("sweep %s stored but not yet sent to the broker", sweep_id)
    return result.response()


@router.get("", response_model=SweepsPublic)
def list_all_sweeps(
    session: SessionDep, owner: OwnerDep, query: Annotated[SweepListQuery, Query()]
) -> SweepsPublic:
    """The owner's sweeps, newest first; follow `next_cursor` for the next page."""
    sweeps, next_cursor = list_sweeps(session=session, owner=owner, query=query)
    return SweepsPublic(items=[read_sweep(session, s) for s in sweeps], next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepPublic)
def read_one_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep) -> SweepPublic:
    """Status, trial counts by state, the best trial so far and the spec that won."""
    return read_sweep(session, get_sweep(session=session, sweep_id=sweep_id, owner=owner))


@router.get("/{sweep_id}/trials", response_model=TrialsPublic)
def read_trials(
    sweep_id: str, session: SessionDep, owner: OwnerDep, query: Annotated[TrialsQuery, Query()]
) -> TrialsPublic:
    """Every trial: its job, parameters, state, objective value and epochs run."""
    sweep = get_sweep(session=session, sweep_id=sweep_id, owner=owner)
    return TrialsPublic(items=sorted_trials(trials_of(session, sweep), query))


@router.post("/{sweep_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=SweepPublic)
def cancel_sweep(sweep_id: str, request: Request, session: SessionDep, owner: OwnerDep) -> SweepPublic:
    """Queued trials end at once; running ones stop within a step plus a heartbeat, keeping a checkpoint."""
    sweep = cancel(session=session, sweep_id=sweep_id, owner=owner)
    public = read_sweep(session, sweep)
    session.commit()
    for trial in trials_of(session, sweep):  # the jobs' cached reads show their cancel at once
        request.app.state.job_reads.forget(trial.job_id)
    return public
