"""When fit() writes checkpoints: by time (and optionally by epochs), the last always, and the best epoch's
weights at the first write after it — so a job keeps few checkpoints and `best` is still the best epoch's."""

import time
from typing import Any

import torch

from models.checkpoint import checkpoint_bytes, read_checkpoint
from models.specs import parse_job_spec
from models.train import EpochReport, Hook, fit

SPEC = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [16]},
    "optimizer": {"name": "sgd", "lr": 0.5},
    "training": {"epochs": 10, "seed": 3},  # its best validation accuracy is at epoch 3
}


class Kept(Hook):
    def __init__(self, pause: float = 0.0) -> None:
        self.checkpoints: list[dict[str, Any]] = []
        self.pause = pause

    def should_stop(self) -> bool:  # called after every step: the time a long step would take
        time.sleep(self.pause)
        return False

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.checkpoints.append(read_checkpoint(checkpoint_bytes(checkpoint)))


def _spec(**training: Any) -> Any:
    return parse_job_spec({**SPEC, "training": SPEC["training"] | training})


def test_by_default_a_short_run_writes_its_best_epoch_and_its_last() -> None:
    every_epoch, default = Kept(), Kept()
    fit(_spec(checkpoint={"every_epochs": 1}), hook=every_epoch)
    result = fit(_spec(), hook=default)
    best_epoch = result.progress.best_epoch
    assert best_epoch is not None and best_epoch < 10
    best, last = default.checkpoints
    assert (best["progress"]["epoch"], best["resumable"], best["optimizers"]) == (best_epoch, False, {})
    assert (last["progress"]["epoch"], last["resumable"]) == (10, True)
    reference = every_epoch.checkpoints[best_epoch - 1]  # the full checkpoint written at the best epoch
    assert all(torch.equal(best["model"][k], v) for k, v in reference["model"].items())
    assert best["metrics"] == reference["metrics"]


def test_every_epochs_adds_checkpoints_on_those_epochs() -> None:
    hook = Kept()
    fit(_spec(checkpoint={"every_epochs": 4}), hook=hook)
    written = [(c["progress"]["epoch"], c["resumable"]) for c in hook.checkpoints]
    assert written == [(3, False), (4, True), (8, True), (10, True)]


def test_the_older_checkpoint_every_means_every_epochs() -> None:
    assert _spec(checkpoint_every=4).training.checkpoint.every_epochs == 4


def test_time_brings_checkpoints_within_an_epoch_and_a_resume_keeps_the_same_best() -> None:
    spec = _spec(epochs=4, checkpoint={"every_seconds": 1})
    uninterrupted = Kept(pause=0.06)  # 23 steps an epoch: over a second, and the loop flushes each second
    result = fit(spec, hook=uninterrupted)
    mid_epoch = [c for c in uninterrupted.checkpoints if c["progress"]["batch_in_epoch"] > 0]
    assert mid_epoch, "a long epoch is checkpointed within it"

    crash_point = mid_epoch[0]  # as if the worker died right after this write
    resumed_hook = Kept()
    resumed = fit(spec, hook=resumed_hook, resume=crash_point)
    assert resumed.progress.best_epoch == result.progress.best_epoch
    assert resumed.progress.best_test_metrics == result.progress.best_test_metrics
    assert all(torch.equal(resumed.model.state_dict()[k], v) for k, v in result.model.state_dict().items())
