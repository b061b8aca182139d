"""/v1/catalog: what can be trained, with JSON Schemas, defaults, templates and limits."""

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.api.datasets import builtins_public
from app.api.deps import get_owner
from app.api.schemas import Catalog, JobCreate
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


@router.get("/catalog", response_model=Catalog)
def read_catalog() -> Catalog:
    return Catalog(
        architectures={arch: _entry(spec) for arch, spec in arch_specs().items()},
        optimizers={s.model_fields["name"].default: _entry(s) for s in union_members(OptimizerSpec)},
        datasets=builtins_public(),
        templates=TEMPLATES,
        limits={name: value for name, value in vars(limits).items() if name.isupper()},
        job_schema=JobCreate.model_json_schema(),
    )
