"""/v1/jobs/{id}/checkpoints: the list, downloads as .pt, safetensors or ONNX, and deletion."""

from functools import partial
from typing import Annotated

import anyio.from_thread
from fastapi import APIRouter, BackgroundTasks, Header, Path, Query, Request, Response, status

from app.api.checkpoints import find_checkpoint, list_checkpoints
from app.api.deletion import delete_checkpoint
from app.api.deps import OwnerDep, SessionDep
from app.api.exports import ConversionFailed, ExportUnavailable, Format, convert
from app.api.jobs import get_job
from app.api.onnx_models import ExportFailed
from app.api.predict import checkpoint_bytes
from app.api.problems import NotFound, problem
from app.api.schemas import CheckpointPublic
from app.db.job_state import verified_bytes
from app.db.space import reclaim_space

router = APIRouter(prefix="/v1/jobs", tags=["checkpoints"])


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointPublic])
def read_checkpoints(job_id: str, session: SessionDep, owner: OwnerDep) -> list[CheckpointPublic]:
    job = get_job(session=session, job_id=job_id, owner=owner)
    return [
        CheckpointPublic.model_validate(c, from_attributes=True)
        for c in list_checkpoints(session=session, job=job)
    ]


@router.get(
    "/{job_id}/checkpoints/{which}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 304: {"description": "unchanged"}},
)
def download_checkpoint(
    job_id: str,
    which: str,
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    format_: Annotated[Format, Query(alias="format")] = "pt",
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """`which`: a checkpoint id, `latest` or `best`. `.pt` resumes and rebuilds (models.load_model);
    safetensors holds the weights alone with the spec in its metadata; onnx is the model for serving (raw
    inputs, normalisation inside; a GAN's generator), 501 when the server lacks the `onnx` extra. ONNX is
    the file predict serves: exported once, outside this process (app/api/onnx_models.py)."""
    job = get_job(session=session, job_id=job_id, owner=owner)
    checkpoint = find_checkpoint(session=session, job=job, which=which, with_data=format_ != "onnx")
    if checkpoint is None:
        raise NotFound("checkpoint", which)
    etag = f'"{checkpoint.sha256}-{format_}"'
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    try:
        if format_ == "onnx":
            load = partial(checkpoint_bytes, request.app.state.session_factory, checkpoint.id)
            data = anyio.from_thread.run(request.app.state.onnx_models.onnx_bytes, checkpoint.sha256, load)
        else:
            data = convert(verified_bytes(checkpoint), format_, request.app.state.settings)
    except ExportUnavailable as error:
        return problem(501, "Not implemented", str(error))
    except (ExportFailed, ConversionFailed) as error:
        return problem(503, "Service unavailable", f"checkpoint {checkpoint.id}: {error}")
    filename = f"{job.id}-epoch{checkpoint.epoch}-step{checkpoint.step}.{format_}"
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "ETag": etag},
    )


@router.delete(
    "/{job_id}/checkpoints/{which}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
def remove_checkpoint(
    job_id: str,
    which: Annotated[int, Path(ge=1, le=2**31 - 1, description="the checkpoint's id (not best or latest)")],
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    background: BackgroundTasks,
) -> Response:
    """Delete one checkpoint of a job. 409 for a protected one: the job's newest (a resume starts from it)
    and its best epoch's (`best` downloads it) stay as long as the job does."""
    delete_checkpoint(session=session, job_id=job_id, owner=owner, checkpoint_id=which)
    session.commit()
    background.add_task(reclaim_space, request.app.state.session_factory)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
