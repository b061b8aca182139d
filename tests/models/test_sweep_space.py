"""A sweep's space: ranges and their types, paths applied shallowest first, conditional paths under a
categorical, the corners the API checks, and where a problem is named."""

from typing import Any

import pytest
from pydantic import ValidationError

from models.errors import SpecError, SpecIssue
from models.specs import parse_job_spec
from models.sweep_space import (
    Choice,
    Range,
    SweepSpec,
    corner_assignments,
    issue_at,
    realize,
)

NAS = {
    "base": {"dataset": {"name": "digits"}, "model": {"arch": "mlp"}, "training": {"epochs": 2}},
    "space": {
        "model.conv_blocks": {"choices": [[{"channels": 8}], [{"channels": 8}, {"channels": 16}]]},
        "model": {
            "choices": [
                {"arch": "mlp", "hidden_sizes": [64]},
                {"arch": "cnn", "conv_blocks": [{"channels": 4}], "hidden_sizes": [32]},
            ]
        },
        "optimizer.lr": {"low": 0.001, "high": 0.1, "log": True},
    },
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
}


def _first(path: str, dist: Choice | Range) -> Any:
    return dist.choices[0] if isinstance(dist, Choice) else dist.low


def test_range_type_follows_its_numbers_unless_given() -> None:
    assert Range(low=1, high=4).is_int
    assert not Range(low=0, high=0.5).is_int
    assert not Range(low=1, high=8, log=True).is_int
    assert Range(low=1, high=8, log=True, type="int").is_int
    assert Range(low=0, high=10, step=3).corners() == [0, 9]  # high rounded down to the step's grid


@pytest.mark.parametrize(
    ("space", "reason"),
    [
        ({"optimizer.lr": {"low": 0.1, "high": 0.01}}, "above high"),
        ({"optimizer.lr": {"low": 0.0, "high": 0.1, "log": True}}, "low > 0"),
        ({"training.epochs": {"low": 1, "high": 9, "type": "int", "step": 0.5}}, "integer"),
        ({"dataset.name": {"choices": ["digits", "iris"]}}, "one dataset"),
        ({"model.activation": {"choices": ["relu", "relu"]}}, "distinct"),
        ({"bad path!": {"choices": [1]}}, "pattern"),
        ({f"model.p{i}": {"choices": [1]} for i in range(17)}, "at most 16 items"),  # MAX_SPACE_PATHS
        ({"training.seed": {"choices": list(range(17))}}, "at most 16 items"),  # MAX_CHOICES
    ],
)
def test_invalid_space_is_refused(space: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        SweepSpec.model_validate({"base": NAS["base"], "space": space})


def test_grid_takes_choices_only_and_no_more_trials_than_points() -> None:
    with pytest.raises(ValidationError, match="choices only"):
        SweepSpec.model_validate({**NAS, "sampler": "grid"})
    grid = {"model.activation": {"choices": ["relu", "tanh"]}}
    with pytest.raises(ValidationError, match="grid's 2 points"):
        SweepSpec.model_validate({"base": NAS["base"], "space": grid, "sampler": "grid", "trials": 3})


def test_conditional_path_applies_only_under_the_choice_that_names_it() -> None:
    sweep = SweepSpec.model_validate(NAS)
    mlp, mlp_params = realize(sweep, _first)
    assert "model.conv_blocks" not in mlp_params and "conv_blocks" not in mlp["model"]
    assert parse_job_spec(mlp).model.arch == "mlp"

    def pick_cnn(path: str, dist: Choice | Range) -> Any:
        return dist.choices[1] if path == "model" and isinstance(dist, Choice) else _first(path, dist)

    cnn, cnn_params = realize(sweep, pick_cnn)
    assert cnn["model"]["conv_blocks"] == [{"channels": 8}]  # set after its parent was chosen
    assert cnn["training"]["objective"] == {"metric": "val_accuracy", "mode": "max"}
    assert list(cnn_params) == ["model", "model.conv_blocks", "optimizer.lr"]  # shallowest first
    assert parse_job_spec(cnn).model.arch == "cnn"


def test_corners_cover_every_choice_and_bound_with_the_parent_a_path_needs() -> None:
    sweep = SweepSpec.model_validate(NAS)
    corners = corner_assignments(sweep)
    for path, dist in sweep.space.items():
        values = dist.choices if isinstance(dist, Choice) else [dist.low, dist.high]
        for value in values:  # each corner value is in some checked assignment (duplicates checked once)
            assert any(assignment[path] == value for _, assignment in corners), (path, value)
    for path, assignment in corners:
        if path == "model.conv_blocks":  # checked under the CNN choice, the only one that names it
            assert assignment["model"]["arch"] == "cnn"
    assert len(corners) == 4


def test_conditional_path_no_choice_names_is_refused_naming_it() -> None:
    space = dict(NAS["space"], **{"model.kernel_size": {"choices": [3, 5]}})
    with pytest.raises(SpecError) as caught:
        corner_assignments(SweepSpec.model_validate({**NAS, "space": space}))
    assert caught.value.issues[0].field == "space.model.kernel_size"


def test_problem_is_named_at_the_space_path_that_set_it_else_in_base() -> None:
    sweep = SweepSpec.model_validate(NAS)
    params = {"optimizer.lr": 30.0, "model": {"arch": "mlp"}}
    at_path = issue_at(sweep, SpecIssue("optimizer.lr", 30.0, "too high"), params, "optimizer.lr")
    assert (at_path.field, at_path.value) == ("space.optimizer.lr", 30.0)
    at_base = issue_at(sweep, SpecIssue("training.epochs", 0, "too low"), params, "optimizer.lr")
    assert at_base.field == "base.training.epochs"
