"""An upload's check as a child of app.core.child_process runs it: imported by the torch-free fork server
for uploads (numpy and the spec models only, so it starts quickly). Never imported by the API process."""

from typing import Any

from models.uploads import read_dataset_file


def read_info(
    data: bytes, filename: str, file_format: str, label_column: str | None, unlabelled: bool
) -> dict[str, Any]:
    """Parse and check the upload; answer what it holds (its DatasetInfo as JSON), the arrays stay here."""
    raw = read_dataset_file(
        data,
        name=filename,
        file_format=file_format,  # type: ignore[arg-type]
        label_column=label_column,
        unlabelled=unlabelled,
    )
    return raw.info.model_dump(mode="json")
