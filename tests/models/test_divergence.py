"""Divergence is an outcome: a run whose training loss goes non-finite or explodes stops as Diverged,
naming the step, epoch and metric, and never checkpoints the weights it broke."""

import math
from typing import Any

import pytest
import torch

from models.errors import Diverged
from models.specs import parse_job_spec
from models.train import EpochReport, Hook, StepReport, fit

# Each architecture at a learning rate of 10 (the limit), with the two optimizers the issue names.
DIVERGING = {
    "mlp": {"dataset": {"name": "digits"}, "model": {"arch": "mlp", "hidden_sizes": [512, 512]}},
    "cnn": {"dataset": {"name": "digits"}, "model": {"arch": "cnn", "activation": "tanh"}},
    "rnn": {"dataset": {"name": "sine"}, "model": {"arch": "rnn", "head": "per_step"}},
    "gan": {"dataset": {"name": "gaussian-ring"}, "model": {"arch": "gan"}},
    "gan-conv": {
        "dataset": {"name": "digits"},
        "model": {"arch": "gan", "generator": {"kind": "conv"}, "discriminator": {"kind": "conv"}},
    },
}


class Recorder(Hook):
    def __init__(self) -> None:
        self.steps: list[StepReport] = []
        self.checkpoints: list[dict[str, Any]] = []

    def on_step(self, report: StepReport) -> None:
        self.steps.append(report)

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.checkpoints.append(checkpoint)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("arch", sorted(DIVERGING))
def test_a_learning_rate_of_10_stops_as_diverged(arch: str, optimizer: str) -> None:
    spec = parse_job_spec(
        DIVERGING[arch] | {"optimizer": {"name": optimizer, "lr": 10}, "training": {"epochs": 3}}
    )
    hook = Recorder()
    with pytest.raises(Diverged) as caught:
        fit(spec, hook=hook)
    error = caught.value
    assert error.step == hook.steps[-1].step and error.epoch == hook.steps[-1].epoch
    assert error.metric.endswith("loss") and f"step {error.step}" in str(error)
    first = hook.steps[0].metrics

    def diverging(metrics: dict[str, float]) -> bool:
        factor = spec.training.divergence_factor
        losses = [k for k in metrics if k.endswith("loss")]
        return any(not math.isfinite(metrics[k]) or metrics[k] > factor * max(1.0, first[k]) for k in losses)

    assert all(diverging(s.metrics) for s in hook.steps[-spec.training.max_nonfinite_steps :])
    assert not diverging(hook.steps[-spec.training.max_nonfinite_steps - 1].metrics)
    for checkpoint in hook.checkpoints:  # only weights from before it broke
        assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


def test_a_run_that_stays_finite_is_not_stopped() -> None:
    spec = parse_job_spec(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden_sizes": [32]},
            "optimizer": {"name": "sgd", "lr": 0.05},
            "training": {"epochs": 2},
        }
    )
    assert fit(spec).status == "completed"


def test_the_steps_in_a_row_are_counted_from_the_spec() -> None:
    base = DIVERGING["mlp"] | {"optimizer": {"name": "momentum", "lr": 10}}
    steps = {}
    for limit in (1, 8):
        hook = Recorder()
        spec = parse_job_spec(base | {"training": {"epochs": 3, "max_nonfinite_steps": limit}})
        with pytest.raises(Diverged):
            fit(spec, hook=hook)
        steps[limit] = len(hook.steps)
    assert steps[8] - steps[1] == 7
