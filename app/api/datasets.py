"""Uploaded datasets: validated on upload, stored with their bytes in the database. The check parses the
whole file (a 260 KB .npz can unpack to 32 M elements), so it runs in a child process under
UPLOAD_PARSE_MEMORY_BYTES and UPLOAD_PARSE_TIMEOUT_SECONDS, at most MAX_CONCURRENT_UPLOAD_PARSES at once per
API process (app/core/child_process.py): the API process holds the bytes, never the arrays."""

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.problems import PayloadTooLarge
from app.api.schemas import DatasetPublic
from app.core import child_process
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.tables import Dataset
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.errors import SpecError

FORMATS = {".npz": "npz", ".csv": "csv"}

UPLOAD_SERVER = "uploads"  # torch-free: it starts in a fraction of a second
child_process.preload("app.api.upload_child", server=UPLOAD_SERVER)


@dataclass(frozen=True)
class UploadForm:
    """What comes with an upload's bytes (multipart form fields)."""

    filename: str
    label_column: str | None = None
    unlabelled: bool = False
    name: str | None = None
    description: str | None = None
    force: bool = False  # store it even when the same bytes were uploaded before


def store_upload(
    *, session: Session, owner: str, data: bytes, form: UploadForm, limits: Settings
) -> tuple[Dataset, bool]:
    """Validate the file by parsing it, then keep it; returns the dataset and whether it is new. The same
    bytes read the same way (label_column) again answer the dataset stored before, unless `force`. The
    client's filename is a label only, never a path."""
    suffix = PurePath(form.filename).suffix.lower()
    if suffix not in FORMATS:
        raise SpecError.single("file", form.filename, f"expected a {' or '.join(FORMATS)} file")
    file_format = FORMATS[suffix]
    filename = PurePath(form.filename).name[:255]
    sha256 = hashlib.sha256(data).hexdigest()
    if not form.force and (stored := _same_upload(session, owner, sha256, form.label_column)) is not None:
        return stored, False
    info = _checked_info(data, filename, file_format, form, limits)
    dataset = Dataset(
        id=str(uuid.uuid4()),
        owner=owner,
        name=form.name,
        description=form.description,
        filename=filename,
        format=file_format,
        label_column=form.label_column,
        info=info,
        size=len(data),
        sha256=sha256,
        data=data,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset, True


def _checked_info(
    data: bytes, filename: str, file_format: str, form: UploadForm, limits: Settings
) -> dict[str, Any]:
    busy = (
        f"{limits.max_concurrent_upload_parses} uploads are being checked in this API process; retry shortly"
    )
    with child_process.slot("upload check", limits.max_concurrent_upload_parses, wait=0, message=busy):
        try:
            return child_process.call(
                "app.api.upload_child:read_info",
                data,
                filename,
                file_format,
                form.label_column,
                form.unlabelled,
                memory_bytes=limits.upload_parse_memory_bytes,
                timeout_seconds=limits.upload_parse_timeout_seconds,
                server=UPLOAD_SERVER,
            )
        except child_process.ChildFailed as failure:
            if failure.kind == "memory":
                raise PayloadTooLarge(
                    f"checking this upload needs more than {limits.upload_parse_memory_bytes:,} bytes "
                    "(UPLOAD_PARSE_MEMORY_BYTES)"
                ) from None
            seconds = limits.upload_parse_timeout_seconds
            reason = (
                f"did not finish within {seconds:g} s (UPLOAD_PARSE_TIMEOUT_SECONDS)"
                if failure.kind == "timeout"
                else str(failure)
            )
            raise SpecError.single("file", filename, f"checking the file {reason}") from None


def _same_upload(session: Session, owner: str, sha256: str, label_column: str | None) -> Dataset | None:
    read_alike = (
        Dataset.label_column.is_(None) if label_column is None else Dataset.label_column == label_column
    )
    return session.scalars(
        select(Dataset)
        .where(Dataset.owner == owner, Dataset.sha256 == sha256, read_alike)
        .order_by(Dataset.created_at)
        .limit(1)
    ).first()


def list_uploads(*, session: Session, owner: str) -> list[Dataset]:
    return list(
        session.scalars(select(Dataset).where(Dataset.owner == owner).order_by(Dataset.created_at.desc()))
    )


def builtin_public(info: DatasetInfo) -> DatasetPublic:
    return _public(info, id=None, builtin=True)


def upload_public(dataset: Dataset) -> DatasetPublic:
    info = DatasetInfo.model_validate(dataset.info)
    named = info.model_copy(
        update={"name": dataset.name or info.name, "description": dataset.description or info.description}
    )
    return _public(
        named,
        id=dataset.id,
        builtin=False,
        filename=dataset.filename,
        label_column=dataset.label_column,
        format=dataset.format,
        size=dataset.size,
        sha256=dataset.sha256,
        created_at=dataset.created_at,
    )


def builtins_public() -> list[DatasetPublic]:
    return [builtin_public(info) for info in BUILTIN_DATASETS.values()]


def _public(info: DatasetInfo, **stored: Any) -> DatasetPublic:
    return DatasetPublic(
        name=info.name,
        task=info.task,
        num_samples=info.num_samples,
        sample_shape=list(info.sample_shape),
        target_shape=list(info.target_shape),
        num_classes=info.num_classes,
        classes=list(info.classes) if info.classes else None,
        feature_names=list(info.feature_names) if info.feature_names else None,
        description=info.description,
        **stored,
    )
