"""The dry check as a child of app.core.child_process runs it: imported once by the fork server (torch with
it), so each check forks warm. Never imported by the API process itself."""

from typing import Any

import torch

from models.dataset_info import DatasetInfo
from models.dry_check import dry_check
from models.specs import JobSpec

# One thread: the check is two samples, and a process forked after torch starts its thread pool could hang.
torch.set_num_threads(1)


def dry_run(spec: dict[str, Any], info: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """The dry check of `spec` on a dataset shaped like `info`: its parameters and objective (as JSON)."""
    checked = dry_check(JobSpec.model_validate(spec), DatasetInfo.model_validate(info))
    objective = checked.objective.model_dump(mode="json") if checked.objective is not None else None
    return checked.parameters, objective


# Warm the server's caches (first-call dispatch, allocator) once, so no fork pays for them.
dry_run(
    {"dataset": {"name": "moons"}, "model": {"arch": "mlp", "hidden_sizes": [4]}},
    DatasetInfo(
        name="warm-up", task="classification", num_samples=10, sample_shape=(2,), num_classes=2
    ).model_dump(),
)
