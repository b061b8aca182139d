"""POST /v1/jobs/{id}/predict: a checkpoint's answers for raw inputs, by ONNX Runtime (no torch here)."""

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import OwnerDep
from app.api.exports import ExportUnavailable
from app.api.onnx_models import ExportFailed, OnnxModels
from app.api.predict import (
    PredictPublic,
    PredictRequest,
    RecentLookups,
    check_request,
    checkpoint_bytes,
    checkpoint_to_serve,
    predict,
    samples,
)
from app.api.problems import problem
from app.db.job_state import CheckpointCorrupted

router = APIRouter(prefix="/v1/jobs", tags=["predict"])
# A run expected to take less than this is done on the event loop: a hop to a worker thread and back costs
# more (bench.predict: one sample's p50 went from 6.6 ms to 2.3 ms on a loaded machine).
INLINE_SECONDS = 0.0005


@router.post("/{job_id}/predict", response_model=PredictPublic)
async def predict_route(job_id: str, body: PredictRequest, request: Request, owner: OwnerDep) -> Response:
    """Classes and probabilities (classifier), outputs (regression) or samples (GAN: `n`, `seed`) of the
    job's `checkpoint` (default best) for `inputs` in data units. The first call for a checkpoint exports
    it to ONNX (seconds; 501 if the server lacks the `onnx` extra, 503 if the export fails)."""
    state = request.app.state
    check_request(body, max_batch=state.settings.max_predict_batch)
    models: OnnxModels = state.onnx_models
    lookups: RecentLookups = state.predict_lookups
    key = (owner, job_id, body.checkpoint)

    def look_up() -> tuple[int, str]:
        with state.session_factory() as session:
            row = checkpoint_to_serve(session=session, job_id=job_id, owner=owner, which=body.checkpoint)
            return row.id, row.sha256

    found = lookups.get(key)
    if found is None:
        found = await run_in_threadpool(look_up)
        lookups.put(key, *found)
    checkpoint_id, sha256 = found
    served = models.cached(sha256)
    if served is None:
        try:
            served = await models.get(sha256, partial(checkpoint_bytes, state.session_factory, checkpoint_id))
        except ExportUnavailable as error:
            return problem(501, "Not implemented", str(error))
        except (ExportFailed, CheckpointCorrupted) as error:
            return problem(503, "Service unavailable", f"checkpoint {checkpoint_id}: {error}")
    if served.expected_seconds(samples(body)) <= INLINE_SECONDS:
        answer = predict(served, body)
    else:
        answer = await run_in_threadpool(predict, served, body)
    return JSONResponse({"checkpoint_id": checkpoint_id, **answer})
