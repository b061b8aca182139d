"""Request and response schemas of /v1/sweeps (the body of POST is models.sweep_space.SweepSpec)."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.api.schemas import METRIC_VALUES
from app.db.sweeps import SweepStatus, TrialState
from models.sweep_space import SweepObjective


class TrialPublic(BaseModel):
    model_config = METRIC_VALUES

    number: int
    job_id: str
    params: dict[str, Any] = Field(description="{path: value} of the space's paths this trial set")
    state: TrialState
    value: float | None = Field(
        description="the objective at the trial's best epoch (so far); null without one"
    )
    epochs_run: int


class TrialsPublic(BaseModel):
    items: list[TrialPublic]


class BestTrial(BaseModel):
    model_config = METRIC_VALUES

    number: int
    job_id: str
    value: float
    params: dict[str, Any]


class TrialCounts(BaseModel):
    queued: int
    running: int
    complete: int
    pruned: int
    failed: int
    cancelled: int


class SweepPublic(BaseModel):
    id: str
    name: str | None
    status: SweepStatus
    spec: dict[str, Any] = Field(description="the sweep as submitted")
    objective: SweepObjective = Field(description="what ranks the trials (explicit: the base's if not given)")
    trials: int = Field(description="trials asked for")
    parallel: int
    counts: TrialCounts
    best: BestTrial | None = Field(description="the best completed trial so far")
    best_spec: dict[str, Any] | None = Field(description="the job spec that won (its job's spec)")
    created_at: datetime
    finished_at: datetime | None


class SweepsPublic(BaseModel):
    items: list[SweepPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page; null at the end")


class SweepListQuery(BaseModel):
    status: SweepStatus | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=200)


class TrialsQuery(BaseModel):
    sort: Literal["number", "value", "-value"] = Field(
        default="number", description="value: ascending, -value: descending; trials without a value last"
    )
