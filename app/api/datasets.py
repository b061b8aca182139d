"""Uploaded datasets: validated on upload (numpy only), stored with their bytes in the database."""

import hashlib
import uuid
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


def store_upload(
    *, session: Session, owner: str, filename: str, data: bytes, label_column: str | None
) -> Dataset:
    """Validate the file by parsing it, then keep it. The client's filename is a label only, never a path."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in FORMATS:
        raise SpecError.single("file", filename, f"expected a {' or '.join(FORMATS)} file")
    file_format = FORMATS[suffix]
    name = PurePath(filename).name[:255]
    raw = read_dataset_file(
        data,
        name=name,
        file_format=file_format,  # type: ignore[arg-type]
        label_column=label_column,
    )
    dataset = Dataset(
        id=str(uuid.uuid4()),
        owner=owner,
        filename=name,
        format=file_format,
        label_column=label_column,
        info=raw.info.model_dump(mode="json"),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset


def list_uploads(*, session: Session, owner: str) -> list[Dataset]:
    return list(
        session.scalars(select(Dataset).where(Dataset.owner == owner).order_by(Dataset.created_at.desc()))
    )


def builtin_public(info: DatasetInfo) -> DatasetPublic:
    return _public(info, id=None, builtin=True)


def upload_public(dataset: Dataset) -> DatasetPublic:
    info = DatasetInfo.model_validate(dataset.info)
    return _public(
        info,
        id=dataset.id,
        builtin=False,
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
        description=info.description,
        **stored,
    )
