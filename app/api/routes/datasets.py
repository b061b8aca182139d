"""/v1/datasets: upload (.npz or .csv), list (built-ins too), read, delete."""

import json
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Header, Request, UploadFile, status
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from app.api.datasets import (
    UploadForm,
    builtin_public,
    builtins_public,
    list_uploads,
    store_upload,
    upload_public,
)
from app.api.deletion import delete_dataset
from app.api.deps import OwnerDep, SessionDep
from app.api.idempotency import request_hash, run_route_once
from app.api.problems import NotFound, PayloadTooLarge
from app.api.schemas import DatasetPublic, DatasetsPublic
from app.api.usage import ensure_room
from app.db.space import reclaim_space
from app.db.tables import Dataset
from models.dataset_info import BUILTIN_DATASETS
from models.limits import MAX_UPLOAD_BYTES

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
CHUNK = 1 << 20


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={
        200: {"model": DatasetPublic, "description": "the same bytes were uploaded before: that dataset"},
        409: {"description": "the same Idempotency-Key is still in flight"},
    },
)
def upload_dataset(
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    file: Annotated[
        UploadFile, File(description=f".npz (x, optional y) or .csv, at most {MAX_UPLOAD_BYTES} B")
    ],
    label_column: Annotated[str | None, Form(max_length=256, description="CSV: the target column")] = None,
    unlabelled: Annotated[
        bool,
        Form(description="CSV without label_column: yes, a column named label/target/class/y is a feature"),
    ] = False,
    name: Annotated[
        str | None, Form(max_length=200, description="what to call it (default: the file's name)")
    ] = None,
    description: Annotated[str | None, Form(max_length=2000)] = None,
    force: Annotated[bool, Form(description="store it again even if the same bytes were uploaded")] = False,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """The file is parsed and checked before it is stored; the response says what nnforge saw in it. The
    same bytes uploaded again (same label_column) answer the stored dataset with 200, unless `force`."""
    data = bytearray()
    while chunk := file.file.read(CHUNK):
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"uploads are limited to {MAX_UPLOAD_BYTES:,} bytes")
    form = UploadForm(file.filename or "upload", label_column, unlabelled, name, description, force)

    def store() -> tuple[int, Any, dict[str, str]]:
        dataset, created = store_upload(
            session=session, owner=owner, data=bytes(data), form=form, limits=request.app.state.settings
        )
        if created:
            limit = request.app.state.settings.max_storage_bytes_per_owner
            what = f"this upload ({dataset.size:,} bytes)"
            ensure_room(
                session=session, owner=owner, limit=limit, adding=dataset.size, what=what, flushed=True
            )
        body = upload_public(dataset).model_dump(mode="json")
        return (201 if created else 200), body, {"Location": f"/v1/datasets/{dataset.id}"}

    fingerprint = request_hash(bytes(data), json.dumps(asdict(form), sort_keys=True).encode())
    return run_route_once(
        request, session, owner=owner, key=idempotency_key, fingerprint=fingerprint, produce=store
    ).response()


@router.get("", response_model=DatasetsPublic)
def list_datasets(session: SessionDep, owner: OwnerDep) -> DatasetsPublic:
    return DatasetsPublic(
        items=builtins_public() + [upload_public(d) for d in list_uploads(session=session, owner=owner)]
    )


@router.get("/{dataset_id}", response_model=DatasetPublic)
def read_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> DatasetPublic:
    """An uploaded dataset by id, or a built-in by its name."""
    if dataset_id in BUILTIN_DATASETS:
        return builtin_public(BUILTIN_DATASETS[dataset_id])
    return upload_public(_owned_upload(session, dataset_id, owner))


@router.get(
    "/{dataset_id}/file",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """The uploaded file as it was sent: `nnforge train` reads a spec's `dataset: {id}` through it."""
    dataset = _owned_upload(session, dataset_id, owner)
    return Response(
        dataset.data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{dataset.filename}"'},
    )


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def remove_dataset(
    dataset_id: str, request: Request, session: SessionDep, owner: OwnerDep, background: BackgroundTasks
) -> Response:
    """Delete an upload. 409 while a queued or running job uses it; finished jobs that used it keep their
    checkpoints and read back with `dataset_deleted: true`."""
    released = delete_dataset(session=session, dataset_id=dataset_id, owner=owner)
    session.commit()
    for job_id in released:
        request.app.state.job_reads.forget(job_id)
    background.add_task(reclaim_space, request.app.state.session_factory)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _owned_upload(session: Session, dataset_id: str, owner: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.owner != owner:
        raise NotFound("dataset", dataset_id)
    return dataset
