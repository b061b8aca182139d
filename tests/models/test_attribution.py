"""Saliency and integrated gradients on trained digits networks; IG's completeness (Captum's delta)."""

import pytest

from models.datasets import builtin_dataset
from models.errors import SpecError
from models.evaluate.run import evaluate
from models.specs import parse_job_spec
from models.train import fit


def _digits(model: dict) -> dict:
    spec = {"dataset": {"name": "digits"}, "model": model, "training": {"epochs": 2, "batch_size": 128}}
    return fit(parse_job_spec(spec)).checkpoint


@pytest.mark.parametrize(
    ("model", "layout"),
    [
        ({"arch": "mlp", "hidden_sizes": [64]}, "images"),
        ({"arch": "cnn", "conv_blocks": [{"channels": 8}]}, "images"),
        ({"arch": "rnn", "hidden_size": 16}, "sequence"),
    ],
)
def test_integrated_gradients_are_complete_on_trained_digits_networks(model: dict, layout: str) -> None:
    result = evaluate("attribution", {"samples": 24}, _digits(model), builtin_dataset("digits"), "test")
    items = result["items"]
    assert len(items) == 24 and result["layout"] == layout and result["baseline"] == "training mean"
    deltas = [abs(item["delta"]) for item in items]
    assert sum(d < 0.05 for d in deltas) >= 0.95 * len(deltas)  # Captum's convergence delta
    assert result["fraction_delta_below_tolerance"] == sum(d < 0.05 for d in deltas) / len(deltas)
    for item in items:
        assert len(item["saliency"]) == 8 and len(item["integrated_gradients"][0]) == 8  # 8×8, as the data
        assert min(min(row) for row in item["saliency"]) >= 0  # |gradient|
        assert item["predicted"] in range(10) and len(item["input"]) == 8
    assert any(any(v != 0 for row in item["integrated_gradients"] for v in row) for item in items)


@pytest.fixture(scope="module")
def sine_rnn() -> dict:
    spec = {
        "dataset": {"name": "sine"},
        "model": {"arch": "rnn", "hidden_size": 4},
        "training": {"epochs": 1},
    }
    return fit(parse_job_spec(spec)).checkpoint


def test_attribution_of_a_regressor_attributes_its_last_output(sine_rnn: dict) -> None:
    result = evaluate("attribution", {"samples": 4}, sine_rnn, builtin_dataset("sine"), "test")
    assert result["target"] == "last output value" and result["layout"] == "sequence"
    assert result["shape"] == [50, 1] and result["fraction_delta_below_tolerance"] >= 0.95


def test_robustness_of_a_regressor_is_refused_naming_the_kind(sine_rnn: dict) -> None:
    with pytest.raises(SpecError) as caught:
        evaluate("robustness", {}, sine_rnn, builtin_dataset("sine"), "test")
    assert caught.value.issues[0].field == "kind"
