"""The step clock (workers/runner.py) counts the steps of a real fit() from the hook's calls alone: steps
reach the hook in groups, so the step a stalled process is in must be counted from the stop checks."""

from typing import Any

from models.specs import parse_job_spec
from models.train import EpochReport, Hook, StepReport, fit
from workers.runner import StepClock, StopSignals


class CountingHook(Hook):
    """Calls the clock as DatabaseHook does, noting its count at every stop check."""

    def __init__(self) -> None:
        self.clock, self.signals = StepClock(60.0, 0), StopSignals()
        self.counts: list[int] = []
        self.epoch_ends: list[int] = []

    def on_step(self, report: StepReport) -> None:
        self.clock.tick(self.signals)
        self.clock.reported_step(report.step, report.epoch)

    def on_epoch(self, report: EpochReport) -> None:
        self.epoch_ends.append(report.step)
        self.clock.tick(self.signals, f"the evaluation of epoch {report.epoch}")
        self.clock.reported_step(report.step, report.epoch + 1)

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.clock.tick(self.signals)

    def should_stop(self) -> bool:
        self.clock.tick(self.signals)
        self.clock.checked()
        self.counts.append(self.clock.done)
        return False


def test_the_clock_counts_every_step_of_a_real_fit() -> None:
    spec = parse_job_spec(
        {
            "dataset": {"name": "moons"},
            "model": {"arch": "mlp", "hidden_sizes": [8]},
            "training": {"epochs": 3, "batch_size": 4, "checkpoint": {"every_epochs": 1}},
        }
    )
    hook = CountingHook()
    result = fit(spec, hook=hook)
    total = result.progress.step
    assert total > 3 * 32  # steps reach the hook in groups of up to 32: several groups an epoch
    # A check after every step, counting it; one more after each epoch but the last, counting none.
    expected = sorted([*range(1, total + 1), *hook.epoch_ends[:-1]])
    assert hook.counts == expected
    assert hook.clock.overrun is None and not hook.signals.stalled.is_set()
