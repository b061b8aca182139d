"""Uploaded datasets: validated on upload (numpy only), stored with their bytes in the database."""

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.schemas import DatasetPublic
from app.db.base import utcnow
from app.db.tables import Dataset
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.errors import SpecError
from models.uploads import read_dataset_file

FORMATS = {".npz": "npz", ".csv": "csv"}


@dataclass(frozen=True)
class UploadForm:
    """What comes with an upload's bytes (multipart form fields)."""

    filename: str
    label_column: str | None = None
    unlabelled: bool = False
    name: str | None = None
    description: str | None = None
    force: bool = False  # store it even when the same bytes were uploaded before


def store_upload(*, session: Session, owner: str, data: bytes, form: UploadForm) -> tuple[Dataset, bool]:
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
    raw = read_dataset_file(
        data,
        name=filename,
        file_format=file_format,  # type: ignore[arg-type]
        label_column=form.label_column,
        unlabelled=form.unlabelled,
    )
    dataset = Dataset(
        id=str(uuid.uuid4()),
        owner=owner,
        name=form.name,
        description=form.description,
        filename=filename,
        format=file_format,
        label_column=form.label_column,
        info=raw.info.model_dump(mode="json"),
        size=len(data),
        sha256=sha256,
        data=data,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset, True


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
