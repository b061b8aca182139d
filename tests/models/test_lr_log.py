"""The learning rate each optimizer stepped with is a step metric, schedules and warm-up included."""

import pytest

from models.specs import parse_job_spec
from models.train import Hook, StepReport, fit


class Steps(Hook):
    def __init__(self) -> None:
        self.reports: list[StepReport] = []

    def on_step(self, report: StepReport) -> None:
        self.reports.append(report)


def test_warm_up_then_a_step_schedule_is_logged_step_by_step() -> None:
    spec = parse_job_spec(
        {
            "dataset": {"name": "moons"},
            "model": {"arch": "mlp", "hidden_sizes": [8]},
            "optimizer": {
                "name": "sgd",
                "lr": 0.1,
                "warmup_steps": 4,
                "schedule": {"kind": "step", "step_size": 1, "gamma": 0.5},
            },
            "training": {"epochs": 3, "batch_size": 256},
        }
    )
    hook = Steps()
    fit(spec, hook=hook)
    lrs = [r.metrics["lr"] for r in hook.reports]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # linear warm-up
    by_epoch = {r.epoch: r.metrics["lr"] for r in hook.reports if r.step > 4}
    assert by_epoch[3] == pytest.approx(by_epoch[2] / 2)


def test_each_optimizer_of_a_gan_is_logged_apart() -> None:
    spec = parse_job_spec(
        {
            "dataset": {"name": "gaussian-ring"},
            "model": {"arch": "gan", "discriminator_optimizer": {"name": "sgd", "lr": 0.01}},
            "optimizer": {"name": "adam", "lr": 0.002},
            "training": {"epochs": 1},
        }
    )
    hook = Steps()
    fit(spec, hook=hook)
    assert {r.metrics["lr_generator"] for r in hook.reports} == {0.002}
    assert {r.metrics["lr_discriminator"] for r in hook.reports} == {0.01}
