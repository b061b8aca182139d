"""Specs: every limit is enforced with a message naming the field, the value and the limit."""

import json
import math

import pytest

from models import limits
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.dry_check import dry_check
from models.errors import SpecError
from models.specs import JobSpec, check_against_dataset, parse_job_spec


def _spec(**parts: object) -> dict:
    base: dict = {"dataset": {"name": "digits"}, "model": {"arch": "mlp"}}
    base.update(parts)
    return base


def _issue(raw: dict) -> tuple[str, object, str]:
    with pytest.raises(SpecError) as caught:
        parse_job_spec(raw)
    issue = caught.value.issues[0]
    return issue.field, issue.value, issue.reason


# (field path, value at the limit, value over it, the limit as the message states it)
LIMITS = [
    ("training.epochs", limits.MAX_EPOCHS, limits.MAX_EPOCHS + 1),
    ("training.batch_size", limits.MAX_BATCH_SIZE, limits.MAX_BATCH_SIZE + 1),
    ("training.seed", limits.MAX_SEED, limits.MAX_SEED + 1),
    ("model.dropout", 0.9, 1.0),
    ("optimizer.lr", limits.MAX_LEARNING_RATE, limits.MAX_LEARNING_RATE * 2),
]


def _set(raw: dict, dotted: str, value: object) -> dict:
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {"name": "adam"} if key == "optimizer" else {})
    node[leaf] = value
    return raw


@pytest.mark.parametrize(("field", "at_limit", "over"), LIMITS)
def test_parse_accepts_the_limit_and_refuses_one_past_it(field: str, at_limit: object, over: object) -> None:
    parse_job_spec(_set(_spec(), field, at_limit))
    name, value, reason = _issue(_set(_spec(), field, over))
    assert name == field
    assert value == over
    assert "less than" in reason


def test_parse_refuses_too_many_and_too_wide_layers() -> None:
    field, value, reason = _issue(_spec(model={"arch": "mlp", "hidden_sizes": [8] * (limits.MAX_LAYERS + 1)}))
    assert field == "model.hidden_sizes" and f"at most {limits.MAX_LAYERS}" in reason
    field, value, reason = _issue(_spec(model={"arch": "mlp", "hidden_sizes": [limits.MAX_WIDTH + 1]}))
    assert (field, value) == ("model.hidden_sizes.0", limits.MAX_WIDTH + 1)
    assert str(limits.MAX_WIDTH) in reason


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1, 0.0, "fast"])
def test_parse_refuses_bad_learning_rates(lr: object) -> None:
    field, _, reason = _issue(_spec(optimizer={"name": "sgd", "lr": lr}))
    assert field == "optimizer.lr"
    assert reason


def test_parse_names_nested_union_fields_without_tags() -> None:
    field, value, _ = _issue(_spec(model={"arch": "cnn", "conv_blocks": [{"kernel_size": 99}]}))
    assert (field, value) == ("model.conv_blocks.0.kernel_size", 99)
    field, _, reason = _issue(_spec(model={"arch": "transformer"}))
    assert field == "model" and "'mlp'" in reason


def test_parse_refuses_unknown_fields_and_datasets() -> None:
    field, _, reason = _issue(_spec(training={"epoch": 3}))
    assert field == "training.epoch" and "not permitted" in reason
    field, _, reason = _issue(_spec(dataset={"name": "mnist"}))
    assert field == "dataset" and "digits" in reason
    field, _, reason = _issue(_spec(dataset={"name": "digits", "path": "x.npz"}))
    assert "exactly one" in reason


def test_parse_refuses_half_precision_on_the_cpu() -> None:
    _, _, reason = _issue(_spec(training={"device": "cpu", "precision": "bf16"}))
    assert "CUDA-only" in reason


def test_parse_collects_every_issue_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_job_spec(_spec(training={"epochs": 0, "batch_size": -1}))
    assert {issue.field for issue in caught.value.issues} == {"training.epochs", "training.batch_size"}


def test_parameter_count_over_the_limit_names_count_and_limit() -> None:
    spec = parse_job_spec(_spec(model={"arch": "mlp", "hidden_sizes": [4096, 4096, 4096]}))
    with pytest.raises(SpecError) as caught:
        check_against_dataset(spec, BUILTIN_DATASETS["digits"])
    issue = caught.value.issues[0]
    assert issue.field == "model"
    assert issue.value == spec.model.num_parameters(BUILTIN_DATASETS["digits"]) > limits.MAX_PARAMETERS
    assert f"{limits.MAX_PARAMETERS:,}" in issue.reason


def test_parameter_count_is_computed_without_allocating() -> None:
    # 2 × 4096² weights would take seconds and gigabytes to allocate; counting is arithmetic.
    huge = DatasetInfo(
        name="wide", task="classification", num_samples=10, sample_shape=(4096,), num_classes=10
    )
    spec = parse_job_spec(_spec(model={"arch": "mlp", "hidden_sizes": [4096] * 8}))
    assert spec.model.num_parameters(huge) == 4096 * 4096 * 8 + 4096 * 8 + 4096 * 10 + 10


@pytest.mark.parametrize(
    ("dataset", "model", "field", "words"),
    [
        ("moons", {"arch": "cnn"}, "model.arch", "image samples"),
        ("digits", {"arch": "cnn", "conv_blocks": [{"channels": 4}] * 4}, "model.conv_blocks.3", "vanishes"),
        ("sine", {"arch": "gan"}, "model.arch", "regression"),
        ("gaussian-ring", {"arch": "mlp"}, "dataset", "no labels"),
        ("moons", {"arch": "gan", "generator": {"kind": "conv"}}, "model.generator.kind", "image samples"),
        ("digits", {"arch": "rnn", "head": "per_step"}, "model.head", "per-step"),
    ],
)
def test_dry_check_refuses_specs_that_cannot_run_on_their_dataset(
    dataset: str, model: dict, field: str, words: str
) -> None:
    spec = parse_job_spec({"dataset": {"name": dataset}, "model": model})
    with pytest.raises(SpecError) as caught:
        dry_check(spec, BUILTIN_DATASETS[dataset])
    assert caught.value.issues[0].field == field
    assert words in caught.value.issues[0].reason


def test_dry_check_reports_a_network_that_fails_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.assemble
    from models.registry import Architecture, get_architecture

    def broken_build(spec, problem):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x64 and 63x8)")

    mlp = get_architecture("mlp")
    monkeypatch.setattr(
        models.assemble, "get_architecture", lambda name: Architecture(name, broken_build, mlp.procedure)
    )
    with pytest.raises(SpecError) as caught:
        dry_check(parse_job_spec(_spec()), BUILTIN_DATASETS["digits"])
    issue = caught.value.issues[0]
    assert (issue.field, issue.value) == ("model", "mlp")
    assert "fails on dataset 'digits'" in issue.reason and "cannot be multiplied" in issue.reason


def test_dry_check_returns_the_parameter_count_for_a_good_spec() -> None:
    spec = parse_job_spec(_spec())
    assert dry_check(spec, BUILTIN_DATASETS["digits"]).parameters == spec.model.num_parameters(
        BUILTIN_DATASETS["digits"]
    )


def test_json_schema_publishes_one_schema_per_kind() -> None:
    schema = JobSpec.model_json_schema()
    text = json.dumps(schema)
    for name in ("MLPSpec", "CNNSpec", "RNNSpec", "GANSpec", "SGDSpec", "AdamSpec", "TrainingSpec"):
        assert name in schema["$defs"]
    assert schema["$defs"]["TrainingSpec"]["properties"]["epochs"]["maximum"] == limits.MAX_EPOCHS
    assert '"propertyName": "arch"' in text
    assert math.isfinite(schema["$defs"]["AdamSpec"]["properties"]["lr"]["maximum"])
