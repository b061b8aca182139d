"""/v1/datasets: upload (.npz or .csv), list (built-ins too), read."""

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Request, UploadFile, status
from fastapi.responses import JSONResponse

from app.api.datasets import builtin_public, builtins_public, list_uploads, store_upload, upload_public
from app.api.deps import OwnerDep, SessionDep
from app.api.idempotency import request_hash, run_route_once
from app.api.problems import NotFound, PayloadTooLarge
from app.api.schemas import DatasetPublic, DatasetsPublic
from app.db.tables import Dataset
from models.dataset_info import BUILTIN_DATASETS
from models.limits import MAX_UPLOAD_BYTES

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
CHUNK = 1 << 20


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={409: {"description": "the same Idempotency-Key is still in flight"}},
)
def upload_dataset(
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    file: Annotated[
        UploadFile, File(description=f".npz (x, optional y) or .csv, at most {MAX_UPLOAD_BYTES} B")
    ],
    label_column: Annotated[str | None, Form(max_length=256, description="CSV: the target column")] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """The file is parsed and checked before it is stored; the response says what nnforge saw in it."""
    data = bytearray()
    while chunk := file.file.read(CHUNK):
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"uploads are limited to {MAX_UPLOAD_BYTES:,} bytes")

    def store() -> tuple[int, Any, dict[str, str]]:
        dataset = store_upload(
            session=session,
            owner=owner,
            filename=file.filename or "upload",
            data=bytes(data),
            label_column=label_column,
        )
        return 201, upload_public(dataset).model_dump(mode="json"), {"Location": f"/v1/datasets/{dataset.id}"}

    fingerprint = request_hash(bytes(data), (file.filename or "").encode(), (label_column or "").encode())
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
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.owner != owner:
        raise NotFound("dataset", dataset_id)
    return upload_public(dataset)
