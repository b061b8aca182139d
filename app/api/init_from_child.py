"""The init_from check as a child of app.core.child_process runs it: the parent's checkpoint loaded into the
new network on paper (models.transfer), with torch, which the API process itself never imports."""

from typing import Any

from models.checkpoint import read_checkpoint
from models.dataset_info import DatasetInfo
from models.specs import JobSpec
from models.transfer import check_compatible


def check_parent(spec: dict[str, Any], info: dict[str, Any], checkpoint: bytes) -> None:
    """SpecError naming each layer of `spec`'s network that the checkpoint's weights do not fit."""
    parent = read_checkpoint(checkpoint)
    check_compatible(JobSpec.model_validate(spec), DatasetInfo.model_validate(info), parent)
