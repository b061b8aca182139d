"""Resuming from a checkpoint continues the run exactly: bitwise-equal weights, one metric series."""

from typing import Any

import pytest
import torch

from models.checkpoint import checkpoint_bytes, read_checkpoint
from models.specs import parse_job_spec
from models.train import EpochReport, Hook, StepReport, fit

SPECS = {
    # dropout and a schedule exercise the RNG and scheduler state; momentum the optimizer state
    "mlp": {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [32], "dropout": 0.2},
        "optimizer": {"name": "momentum", "lr": 0.05, "schedule": {"kind": "cosine"}, "warmup_steps": 5},
        "training": {"epochs": 4, "batch_size": 128, "seed": 3, "checkpoint": {"every_epochs": 1}},
    },
    "gan": {
        "dataset": {"name": "gaussian-ring"},
        "model": {
            "arch": "gan",
            "generator": {"hidden_sizes": [16]},
            "discriminator": {"hidden_sizes": [16]},
            "d_steps": 2,
            "discriminator_optimizer": {"name": "rmsprop", "lr": 0.001},
        },
        "optimizer": {"name": "adam", "lr": 0.001},
        "training": {"epochs": 3, "batch_size": 256, "seed": 5, "checkpoint": {"every_epochs": 1}},
    },
    "rnn": {
        "dataset": {"name": "sine"},
        "model": {"arch": "rnn", "cell": "gru", "hidden_size": 8},
        "optimizer": {
            "name": "adagrad",
            "lr": 0.05,
            "schedule": {"kind": "step", "step_size": 1, "gamma": 0.5},
        },
        "training": {"epochs": 3, "batch_size": 100, "seed": 7, "checkpoint": {"every_epochs": 1}},
    },
}


class Recorder(Hook):
    """Keeps every step report and checkpoint (as bytes, the way the service stores them)."""

    def __init__(self, stop_after_calls: int | None = None) -> None:
        self.steps: list[StepReport] = []
        self.checkpoints: list[tuple[bytes, EpochReport | None]] = []
        self.calls, self.stop_after = 0, stop_after_calls

    def on_step(self, report: StepReport) -> None:
        self.steps.append(report)

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.checkpoints.append((checkpoint_bytes(checkpoint), report))

    def should_stop(self) -> bool:  # called after every step and after every epoch but the last
        self.calls += 1
        return self.stop_after is not None and self.calls >= self.stop_after


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert unequal == []


@pytest.mark.parametrize("name", sorted(SPECS))
def test_resume_from_epoch_checkpoint_gives_bitwise_equal_weights(name: str) -> None:
    spec = parse_job_spec(SPECS[name])
    full = Recorder()
    uninterrupted = fit(spec, hook=full)

    first_epoch_checkpoint = read_checkpoint(full.checkpoints[0][0])
    assert first_epoch_checkpoint["progress"]["epoch"] == 1
    resumed_hook = Recorder()
    resumed = fit(spec, hook=resumed_hook, resume=first_epoch_checkpoint)

    _assert_bitwise_equal(_weights(uninterrupted.model), _weights(resumed.model))
    assert resumed.metrics == uninterrupted.metrics
    steps_before = [s for s in full.steps if s.epoch == 1]
    assert [s.step for s in steps_before + resumed_hook.steps] == [s.step for s in full.steps]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_resume_after_a_mid_epoch_stop_loses_and_repeats_no_step(name: str) -> None:
    spec = parse_job_spec(SPECS[name])
    full = Recorder()
    uninterrupted = fit(spec, hook=full)
    steps_per_epoch = full.steps[-1].step // spec.training.epochs
    stop_at = steps_per_epoch + steps_per_epoch // 2  # halfway through epoch 2

    first = Recorder(stop_after_calls=stop_at + 1)  # + the call at the end of epoch 1
    stopped = fit(spec, hook=first)
    assert stopped.status == "stopped"
    assert first.checkpoints[-1][1] is None  # a mid-epoch checkpoint
    mid_epoch = read_checkpoint(first.checkpoints[-1][0])
    assert (mid_epoch["progress"]["epoch"], mid_epoch["progress"]["step"]) == (1, stop_at)

    second = Recorder()
    resumed = fit(spec, hook=second, resume=mid_epoch)

    _assert_bitwise_equal(_weights(uninterrupted.model), _weights(resumed.model))
    series = [(s.step, s.metrics) for s in first.steps + second.steps]
    assert series == [(s.step, s.metrics) for s in full.steps]
    assert resumed.metrics == uninterrupted.metrics


def test_resume_refuses_a_checkpoint_of_another_spec() -> None:
    spec = parse_job_spec(SPECS["mlp"])
    hook = Recorder(stop_after_calls=1)
    fit(spec, hook=hook)
    other = parse_job_spec({**SPECS["mlp"], "model": {"arch": "mlp", "hidden_sizes": [33]}})
    with pytest.raises(ValueError, match="different spec"):
        fit(other, resume=read_checkpoint(hook.checkpoints[-1][0]))
