"""The dry check a POST runs before it queues a job, off the API's own memory and time: in a child process
(app/core/child_process.py) under DRY_RUN_MEMORY_BYTES and DRY_RUN_TIMEOUT_SECONDS, at most
MAX_CONCURRENT_DRY_RUNS at once per API process. Its estimate (models/cost.py) has already been checked
against MAX_DRY_RUN_FLOPS, so these bounds only catch what the estimate misses."""

from dataclasses import dataclass

from app.core import child_process
from app.core.settings import Settings
from models.dataset_info import DatasetInfo
from models.errors import SpecError
from models.specs import JobSpec, ObjectiveSpec

child_process.preload("app.api.dry_run_child")

_WHAT = "the dry run (one training step and one evaluation on 2 samples, before the job queues)"


@dataclass(frozen=True)
class Checked:
    parameters: int
    objective: ObjectiveSpec | None  # the spec's, or the default for this network and dataset


def bounded_dry_check(spec: JobSpec, info: DatasetInfo, settings: Settings) -> Checked:
    """models.dry_check in a bounded child; SpecError for the spec's faults and for a check out of bounds,
    child_process.Busy when every slot stays taken for DRY_RUN_TIMEOUT_SECONDS."""
    busy = f"{settings.max_concurrent_dry_runs} dry runs are under way in this API process; retry shortly"
    with child_process.slot(
        "dry run", settings.max_concurrent_dry_runs, wait=settings.dry_run_timeout_seconds, message=busy
    ):
        try:
            parameters, objective = child_process.call(
                "app.api.dry_run_child:dry_run",
                spec.model_dump(mode="json"),
                info.model_dump(mode="json"),
                memory_bytes=settings.dry_run_memory_bytes,
                timeout_seconds=settings.dry_run_timeout_seconds,
            )
        except child_process.ChildFailed as failure:
            reason = {
                "timeout": f"did not finish within {settings.dry_run_timeout_seconds:g} s "
                "(DRY_RUN_TIMEOUT_SECONDS)",
                "memory": f"needed more than {settings.dry_run_memory_bytes:,} bytes (DRY_RUN_MEMORY_BYTES)",
            }.get(failure.kind, str(failure))
            raise SpecError.single("model", spec.model.arch, f"{_WHAT} {reason}") from None
    return Checked(parameters, ObjectiveSpec.model_validate(objective) if objective is not None else None)
