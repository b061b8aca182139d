"""Learning tests: each template, trained on the CPU with its fixed seed, meets its target on the test split.

The targets have a margin over what seed 0 reaches (seeds 1 and 2 reach them too); each training takes
seconds on one thread. The conv GAN only gets a short smoke run.
"""

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from models.data import split_indices
from models.datasets import builtin_dataset
from models.specs import JobSpec, parse_job_spec
from models.templates import TEMPLATES
from models.train import FitResult, Hook, StepReport, fit


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: steadier timings on a shared machine, and the same result on every run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def template_spec(name: str, **training: Any) -> JobSpec:
    raw = copy.deepcopy(TEMPLATES[name])
    raw["training"] |= {"device": "cpu", **training}
    return parse_job_spec(raw)


def train(name: str, hook: Hook | None = None, **training: Any) -> FitResult:
    result = fit(template_spec(name, **training), hook=hook)
    assert result.status == "completed"
    return result


@pytest.mark.slow
def test_mlp_learns_digits() -> None:
    metrics = train("mlp").metrics
    assert metrics["test_accuracy"] >= 0.96, metrics


@pytest.mark.slow
def test_cnn_learns_digits() -> None:
    metrics = train("cnn").metrics
    assert metrics["test_accuracy"] >= 0.97, metrics


@pytest.mark.slow
def test_vanilla_rnn_learns_digits_as_sequences() -> None:
    assert TEMPLATES["rnn"]["model"]["cell"] == "rnn"
    metrics = train("rnn").metrics
    assert metrics["test_accuracy"] >= 0.93, metrics


def last_value_mse(spec: JobSpec) -> float:
    """MSE on the test split of the predictor that repeats the current value (y_t = x_t)."""
    raw = builtin_dataset("sine")
    test = split_indices(
        raw.info.num_samples,
        spec.training.validation_fraction,
        spec.training.test_fraction,
        spec.training.seed,
    )["test"]
    assert len(test) > 0
    return float(np.mean((raw.x[test].astype(np.float64) - raw.y[test]) ** 2))


@pytest.mark.slow
def test_lstm_predicts_sine_far_better_than_last_value() -> None:
    spec = template_spec("rnn-sine")
    assert spec.model.arch == "rnn" and spec.model.cell == "lstm"
    baseline = last_value_mse(spec)
    result = fit(spec)
    assert result.status == "completed"
    mse = result.metrics["test_mse"]
    assert mse * 5 <= baseline, f"test_mse {mse:.5f} vs last-value baseline {baseline:.5f}"


@pytest.mark.slow
def test_gan_covers_the_gaussian_ring() -> None:
    metrics = train("gan").metrics
    assert metrics["test_modes_covered"] >= 7, metrics
    # Share of generated samples within 3σ of a mode: a blurred ring scores near 0, a sharp one near 1.
    assert metrics["test_high_quality_fraction"] >= 0.7, metrics


class StepLosses(Hook):
    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_step(self, report: StepReport) -> None:
        self.steps.append(report.metrics)


def test_conv_gan_trains_with_finite_losses() -> None:
    hook = StepLosses()
    result = train("gan-conv", hook=hook, epochs=2)
    assert result.progress.epoch == 2
    assert len(hook.steps) == result.progress.step > 0
    for metrics in [*hook.steps, result.metrics]:
        assert all(math.isfinite(value) for value in metrics.values()), metrics
    for key in ("train_d_loss", "train_g_loss", "test_d_real", "test_d_fake"):
        assert key in result.metrics
