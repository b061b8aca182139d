"""/v1/catalog: what can be trained, with JSON Schemas, defaults, templates and limits."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from app.api.datasets import builtins_public
from app.api.deps import get_owner
from app.api.schemas import Catalog, JobCreate
from app.core.settings import Settings
from models import limits
from models.specs import OptimizerSpec, arch_specs, union_members
from models.templates import TEMPLATES

router = APIRouter(prefix="/v1", tags=["catalog"], dependencies=[Depends(get_owner)])


def _entry(spec: type[BaseModel]) -> dict[str, Any]:
    return {
        "schema": spec.model_json_schema(),
        "defaults": spec().model_dump(mode="json"),
        "description": (spec.__doc__ or "").strip(),
    }


def _cost_limits(settings: Settings) -> dict[str, int | float]:
    """The limits on a spec's estimated cost (models/cost.py), which the service's settings hold."""
    return {
        "MAX_STEP_FLOPS": settings.max_step_flops,
        "MAX_DRY_RUN_FLOPS": settings.max_dry_run_flops,
        "MAX_JOB_MEMORY_BYTES": settings.max_job_memory_bytes,
    }


@router.get("/catalog", response_model=Catalog)
def read_catalog(request: Request) -> Catalog:
    """`limits` holds the spec limits and the cost limits: a job's estimated FLOPs per training step
    (MAX_STEP_FLOPS), of the check before it queues (MAX_DRY_RUN_FLOPS) and its memory
    (MAX_JOB_MEMORY_BYTES); over any, POST /v1/jobs answers 422 naming the estimate and the limit."""
    return Catalog(
        architectures={arch: _entry(spec) for arch, spec in arch_specs().items()},
        optimizers={s.model_fields["name"].default: _entry(s) for s in union_members(OptimizerSpec)},
        datasets=builtins_public(),
        templates=TEMPLATES,
        limits={name: value for name, value in vars(limits).items() if name.isupper()}
        | _cost_limits(request.app.state.settings),
        job_schema=JobCreate.model_json_schema(),
    )
