"""/v1/catalog: what can be trained, with JSON Schemas, defaults, templates and limits."""

from typing import Any, get_args

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.api.datasets import builtins_public
from app.api.deps import get_owner
from app.api.schemas import Catalog, JobCreate
from models import limits
from models.specs import CNNSpec, GANSpec, MLPSpec, OptimizerSpec, RNNSpec
from models.templates import TEMPLATES

router = APIRouter(prefix="/v1", tags=["catalog"], dependencies=[Depends(get_owner)])


def _entry(spec: type[BaseModel]) -> dict[str, Any]:
    return {
        "schema": spec.model_json_schema(),
        "defaults": spec().model_dump(mode="json"),
        "description": (spec.__doc__ or "").strip(),
    }


def _optimizer_types() -> list[type[BaseModel]]:
    union = get_args(OptimizerSpec)[0]
    return [get_args(member)[0] for member in get_args(union)]


@router.get("/catalog", response_model=Catalog)
def read_catalog() -> Catalog:
    return Catalog(
        architectures={
            s.model_fields["arch"].default: _entry(s) for s in (MLPSpec, CNNSpec, RNNSpec, GANSpec)
        },
        optimizers={s.model_fields["name"].default: _entry(s) for s in _optimizer_types()},
        datasets=builtins_public(),
        templates=TEMPLATES,
        limits={name: value for name, value in vars(limits).items() if name.isupper()},
        job_schema=JobCreate.model_json_schema(),
    )
