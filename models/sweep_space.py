"""A sweep's spec: a base job spec, a space of dotted paths into it (each a distribution), an objective and
how to search. Pure pydantic: the service samples it through Optuna (workers/sweep_study.py), the API checks
its corners, and both build a trial's job spec with `realize`.

Paths apply shallowest first (then in the order given), so a categorical over a whole sub-spec (`model:
{choices: [{arch: mlp, …}, {arch: cnn, …}]}`, the architecture-search case) is chosen before the paths below
it. A path below such a categorical is conditional: it applies to the choices that name its key (`model.
conv_blocks` to the CNN choice that has `conv_blocks`) and is neither sampled nor set under the others.
"""

import copy
import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from models import limits
from models.errors import SpecError, SpecIssue
from models.specs import Spec, issue_reason

MAX_SWEEP_TRIALS: Final = 200
MAX_SWEEP_PARALLEL: Final = 16
MAX_SPACE_PATHS: Final = 16
MAX_CHOICES: Final = 16
MAX_GRID_POINTS: Final = MAX_SWEEP_TRIALS  # a grid sweep tries every point once

PATH_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]{1,3}))*$"


class Choice(Spec):
    """Categorical: any JSON values, whole sub-specs included."""

    choices: list[Any] = Field(min_length=1, max_length=MAX_CHOICES)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[Any]) -> list[Any]:
        encoded = [json.dumps(c, sort_keys=True) for c in choices]
        if len(set(encoded)) != len(encoded):
            raise ValueError("choices must be distinct")
        return choices


class Range(Spec):
    """A number in [low, high]: an integer when `type` is "int", or when it is left out and low, high (and
    step) are all integers without `log`; else a float. `log` samples on a log scale (low > 0); `step`
    rounds to low + k·step (not with `log` for floats; only 1 with `log` for integers)."""

    low: int | float
    high: int | float
    log: bool = False
    step: Annotated[int | float, Field(gt=0)] | None = None
    type: Literal["int", "float"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Range":
        if not all(math.isfinite(v) for v in (self.low, self.high)):
            raise ValueError("low and high must be finite")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.is_int:
            if any(v != int(v) for v in (self.low, self.high, self.step or 1)):
                raise ValueError("an int range needs integer low, high and step")
            if self.log and (self.step or 1) != 1:
                raise ValueError("an int log range takes no step other than 1")
        elif self.log and self.step is not None:
            raise ValueError("a float range takes log or step, not both")
        return self

    @property
    def is_int(self) -> bool:
        if self.type is not None:
            return self.type == "int"
        given = [self.low, self.high] + ([self.step] if self.step is not None else [])
        return not self.log and all(isinstance(v, int) for v in given)

    def corners(self) -> list[int | float]:
        """low and the highest value the range can produce (high rounded down to the step's grid)."""
        high = self.high
        if self.step is not None:
            high = self.low + math.floor((self.high - self.low) / self.step + 1e-9) * self.step
        values = [self.low, high]
        return [int(v) for v in values] if self.is_int else [float(v) for v in values]


def _distribution_kind(value: Any) -> str:
    choice = isinstance(value, Choice) or (isinstance(value, dict) and "choices" in value)
    return "choice" if choice else "range"


Distribution = Annotated[
    Annotated[Choice, Tag("choice")] | Annotated[Range, Tag("range")], Discriminator(_distribution_kind)
]
SpacePath = Annotated[str, Field(max_length=200, pattern=PATH_PATTERN)]


MODE: Final = {"maximize": "max", "minimize": "min"}  # a job's objective mode for a sweep's direction


class SweepObjective(Spec):
    metric: str = Field(max_length=64, examples=["val_accuracy"])
    direction: Literal["maximize", "minimize"]


class SweepSpec(Spec):
    """What POST /v1/sweeps takes (the YAML of `nnforge sweep submit`)."""

    name: str | None = Field(default=None, max_length=200)
    base: dict[str, Any] = Field(description="a job spec; every trial starts from it")
    space: dict[SpacePath, Distribution] = Field(min_length=1, max_length=MAX_SPACE_PATHS)
    objective: SweepObjective | None = Field(
        default=None, description="default: the base job's objective (val_accuracy for a classifier …)"
    )
    trials: int = Field(default=20, ge=1, le=MAX_SWEEP_TRIALS)
    parallel: int = Field(default=1, ge=1, le=MAX_SWEEP_PARALLEL, description="trial jobs queued or running")
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: int = Field(default=0, ge=0, le=limits.MAX_SEED)
    pruner: Literal["none", "median", "asha"] = "none"

    @field_validator("space")
    @classmethod
    def _one_dataset(cls, space: dict[str, Any]) -> dict[str, Any]:
        for path in space:
            if path == "dataset" or path.startswith("dataset."):
                raise ValueError(f"{path}: a sweep searches one dataset; set it in base")
        return space

    @model_validator(mode="after")
    def _grid_of_choices(self) -> "SweepSpec":
        if self.sampler != "grid":
            return self
        ranges = [p for p, d in self.space.items() if isinstance(d, Range)]
        if ranges:
            raise ValueError(f"the grid sampler takes choices only; {ranges[0]} is a range")
        if self.trials > grid_size(self):
            raise ValueError(f"trials ({self.trials}) is above the grid's {grid_size(self)} points")
        return self


def parse_sweep(raw: Any) -> SweepSpec:
    """Validate a raw mapping into a SweepSpec; every problem becomes a SpecIssue naming its field (a space's
    path as `space.PATH`, without the distribution kind pydantic puts in error locations)."""
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as error:
        issues = [
            SpecIssue(_field(err["loc"]), err.get("input"), issue_reason(err))
            for err in error.errors(include_url=False)
        ]
        raise SpecError(issues) from None


def _field(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    if parts[:1] == ["space"] and len(parts) >= 3 and parts[2] in ("choice", "range"):
        del parts[2]
    return ".".join(str(p) for p in parts) or "sweep"


def grid_size(sweep: SweepSpec) -> int:
    return math.prod(len(d.choices) for d in sweep.space.values() if isinstance(d, Choice))


def _parts(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def ordered_paths(sweep: SweepSpec) -> list[str]:
    """Shallowest first, then in the order given: a sub-spec is chosen before the paths below it."""
    return sorted(sweep.space, key=lambda p: p.count("."))


def _node(raw: Any, parts: list[str | int]) -> Any:
    for part in parts:
        if isinstance(raw, dict) and isinstance(part, str):
            raw = raw.get(part)
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return None
    return raw


def applies(sweep: SweepSpec, raw: dict[str, Any], path: str) -> bool:
    """Whether `path` is sampled for a trial whose spec so far is `raw`: always, unless a categorical of the
    space sits above it; then only where the chosen value names its key."""
    if not any(isinstance(sweep.space.get(a), Choice) for a in _ancestors(path)):
        return True
    return applies_to(raw, _parts(path))


def with_value(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `raw` with `path` set to `value`; missing objects on the way are created."""
    out = copy.deepcopy(raw)
    node: Any = out
    parts = _parts(path)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict) and isinstance(part, str):
            if last:
                node[part] = copy.deepcopy(value)
            else:
                node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            if last:
                node[part] = copy.deepcopy(value)
            else:
                node = node[part]
        else:
            where = ".".join(str(p) for p in parts[:i]) or "the spec"
            raise SpecError.single(f"space.{path}", value, f"{where} has no {part!r} to set")
    return out


Suggest = Callable[[str, Choice | Range], Any]


def realize(sweep: SweepSpec, suggest: Suggest) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's raw job spec and its parameters ({path: value}), each value from `suggest(path, dist)`;
    the spec's objective is the sweep's (when set), so its best epoch is the one the sweep ranks."""
    raw, params = copy.deepcopy(sweep.base), {}
    for path in ordered_paths(sweep):
        if applies(sweep, raw, path):
            params[path] = suggest(path, sweep.space[path])
            raw = with_value(raw, path, params[path])
    if sweep.objective is not None:
        objective = {"metric": sweep.objective.metric, "mode": MODE[sweep.objective.direction]}
        raw = with_value(raw, "training.objective", objective)
    return raw, params


def corner_assignments(sweep: SweepSpec) -> list[tuple[str, dict[str, Any]]]:
    """(the path it varies, a value for every path): each path at each of its corners (every choice; a
    range's low and high), the others at their first corner, and a categorical above it at the first
    choice that names it. Raises SpecError naming a conditional path no choice names."""
    first = {p: _corners(d)[0] for p, d in sweep.space.items()}
    out, seen = [], set()
    for path, dist in sweep.space.items():
        base = dict(first)
        for ancestor in _ancestors(path):
            above = sweep.space.get(ancestor)
            if isinstance(above, Choice):
                rest = _parts(path[len(ancestor) + 1 :])
                naming = [c for c in above.choices if applies_to(c, rest)]
                if not naming:
                    raise SpecError.single(
                        f"space.{path}",
                        path,
                        f"no choice of {ancestor} has {rest[-1]!r}: under a categorical a path applies to "
                        "the choices that name its key",
                    )
                base[ancestor] = naming[0]
        for value in _corners(dist):
            assignment = base | {path: value}
            key = json.dumps(assignment, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append((path, assignment))
    return out


def applies_to(choice: Any, rest: list[str | int]) -> bool:
    parent = _node(choice, rest[:-1])
    last = rest[-1]
    return (isinstance(parent, dict) and last in parent) or (
        isinstance(parent, list) and isinstance(last, int) and last < len(parent)
    )


def _corners(dist: Choice | Range) -> list[Any]:
    return list(dist.choices) if isinstance(dist, Choice) else dist.corners()


def issue_at(sweep: SweepSpec, issue: SpecIssue, params: dict[str, Any], varied: str) -> SpecIssue:
    """A problem of a realized spec, named where the user can fix it: `space.PATH` when a path of the space
    set the field (or a spec above or below it), else `base.FIELD`."""
    field = issue.field

    def related(path: str) -> bool:
        return path == field or path.startswith(field + ".") or field.startswith(path + ".")

    candidates = [varied] + [p for p in params if p != varied]
    for path in candidates:
        if path in params and related(path):
            return SpecIssue(f"space.{path}", params[path], f"{issue.reason} (at {field} = {issue.value!r})")
    return SpecIssue(f"base.{field}", issue.value, issue.reason)
