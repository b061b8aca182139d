"""Few-shot transfer on digits (issue 14): pretrain on one half, learn a new task on the other from k labelled
samples per class, against the same network trained from scratch; and "train longer" from a checkpoint.

    .venv/bin/python -m bench.transfer [--seeds 4] [--ks 5 20]

Protocol (the issue's, measured there with plain PyTorch): digits split into two fixed halves by a seeded
permutation. The parent, a 64-128-64 ReLU MLP (hidden_sizes [128, 64]), trains on all ten classes of half A
for 30 epochs (Adam 1e-3, batch 16, no validation or test split). The new task is the parity of the digit on
half B: k samples per class (odd, even) drawn per seed train the child for 100 epochs at batch 16, and the
rest of half B scores it. Three children per seed and k: fine-tune (`init_from: {load: body}`), head only
(`{load: body, freeze: body}`) and scratch (no init_from). Every run is `models.train.fit`, the function the
worker runs, given the parent's checkpoint as the worker gives it; the score is the child's checkpoint
rebuilt with `load_model` (raw inputs in). This runs fit() in-process rather than through the service: on the
shared 2-core machine a job's process start dominates runs this small, and the figures are the same
arithmetic. One difference from the plain-PyTorch reference: the service standardises each pixel on the
training part (the child keeps the parent's statistics) where the reference divided by 16.

"Train longer": a parent trains 10 epochs of the MLP template's digits split; a child with
`{checkpoint: latest, optimizer_state: keep}` trains 10 more. It starts at the parent's last epoch (keep
needs the latest checkpoint, the one with optimizer state): 0 epochs to be back where the parent stopped,
against the epochs a run from scratch needs to get there; then the epochs each needs to reach the parent's
best validation loss (below its last when the parent's best epoch was an earlier one). The child and one
uninterrupted run of 20 epochs are compared tensor by tensor.
"""

import argparse
import copy
import statistics
import time
from typing import Any

import numpy as np
import torch

from bench.report import console, table
from bench.stack import machine
from models.checkpoint import load_model
from models.datasets import builtin_dataset
from models.raw_dataset import RawDataset
from models.specs import JobSpec, parse_job_spec
from models.templates import TEMPLATES
from models.train import EpochReport, Hook, fit

# The plain-PyTorch means over 4 seeds (inputs / 16), for the table beside ours.
REFERENCE = {5: {"fine-tune": 0.805, "head only": 0.762, "scratch": 0.742},
             20: {"fine-tune": 0.868, "head only": 0.865, "scratch": 0.843}}  # fmt: skip
MODES: dict[str, dict[str, Any] | None] = {
    "fine-tune": {"load": "body", "freeze": "none"},
    "head only": {"load": "body", "freeze": "body"},
    "scratch": None,
}
ALL_TRAIN = {"validation_fraction": 0.0, "test_fraction": 0.0, "device": "cpu"}


def _spec(epochs: int, seed: int, init_from: dict[str, Any] | None = None) -> JobSpec:
    raw: dict[str, Any] = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [128, 64], "activation": "relu"},
        "optimizer": {"name": "adam", "lr": 0.001},
        "training": {"epochs": epochs, "batch_size": 16, "seed": seed} | ALL_TRAIN,
    }
    if init_from is not None:
        raw["init_from"] = {"job": "00be0c4e"} | init_from
    return parse_job_spec(raw)


def _subset(raw: RawDataset, index: np.ndarray, labels: np.ndarray, classes: int) -> RawDataset:
    info = raw.info.model_copy(update={"num_samples": len(index), "num_classes": classes})
    return RawDataset(info, raw.x[index], labels)


def few_shot(seeds: int, ks: list[int]) -> dict[int, dict[str, list[float]]]:
    digits = builtin_dataset("digits")
    assert digits.y is not None
    halves = np.random.default_rng(0).permutation(len(digits.y))
    a, b = np.sort(halves[: len(halves) // 2]), np.sort(halves[len(halves) // 2 :])
    scores: dict[int, dict[str, list[float]]] = {k: {mode: [] for mode in MODES} for k in ks}
    for seed in range(seeds):
        parent = fit(_spec(30, seed), dataset=_subset(digits, a, digits.y[a], 10)).checkpoint
        rng = np.random.default_rng(100 + seed)
        parity = digits.y[b] % 2
        for k in ks:
            drawn = [rng.choice(np.flatnonzero(parity == c), k, replace=False) for c in (0, 1)]
            chosen = np.concatenate(drawn)
            rest = np.setdiff1d(np.arange(len(b)), chosen)
            train = _subset(digits, b[chosen], parity[chosen], 2)
            x_rest = torch.tensor(digits.x[b[rest]]).flatten(1)
            for mode, init in MODES.items():
                child = fit(_spec(100, seed, init), dataset=train, parent=parent if init else None)
                with torch.no_grad():
                    predicted = load_model(child.checkpoint)(x_rest).argmax(1).numpy()
                scores[k][mode].append(float((predicted == parity[rest]).mean()))
    return scores


class _ValLosses(Hook):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_epoch(self, report: EpochReport) -> None:
        self.losses.append(report.metrics["val_loss"])


def train_longer() -> dict[str, Any]:
    raw = copy.deepcopy(TEMPLATES["mlp"])
    raw["training"] |= {"epochs": 10, "device": "cpu"}
    parent_hook = _ValLosses()
    parent = fit(parse_job_spec(raw), hook=parent_hook).checkpoint
    target = min(parent_hook.losses)
    keep = {"job": "00be0c4e", "checkpoint": "latest", "optimizer_state": "keep"}
    child_hook, scratch_hook = _ValLosses(), _ValLosses()
    started = time.perf_counter()
    child = fit(parse_job_spec(raw | {"init_from": keep}), hook=child_hook, parent=parent)
    child_seconds = time.perf_counter() - started
    whole = fit(parse_job_spec(raw | {"training": raw["training"] | {"epochs": 20}}), hook=scratch_hook)
    start = parent_hook.losses[-1]  # where the child starts: the parent's last epoch (its latest checkpoint)
    return {
        "best": target,
        "start": start,
        "scratch_to_start": _first_at(scratch_hook.losses, start),
        "child_to_best": 0 if start <= target else _first_at(child_hook.losses, target),
        "scratch_to_best": _first_at(scratch_hook.losses, target),
        "child_seconds": child_seconds,
        "bit_identical": all(
            torch.equal(value, whole.model.state_dict()[key])
            for key, value in child.model.state_dict().items()
        ),
    }


def _first_at(losses: list[float], target: float) -> int | None:
    return next((epoch for epoch, loss in enumerate(losses, start=1) if loss <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 20])
    args = parser.parse_args()
    torch.set_num_threads(1)
    console.print(machine())
    started = time.perf_counter()
    scores = few_shot(args.seeds, args.ks)
    rows = []
    for k, by_mode in scores.items():
        for mode, values in by_mode.items():
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            reference = REFERENCE.get(k, {}).get(mode)
            mean = f"{statistics.mean(values):.3f} ± {spread:.3f}"
            each = " ".join(f"{v:.3f}" for v in values)
            rows.append([str(k), mode, mean, each, f"{reference:.3f}" if reference else "—"])
    seconds = time.perf_counter() - started
    console.print(
        table(
            f"Few-shot parity on digits' second half ({args.seeds} seeds, {seconds:.0f} s)",
            ["k", "child", "accuracy (mean ± sd)", "per seed", "plain PyTorch (issue)"],
            rows,
        )
    )
    for k, by_mode in scores.items():
        gain = statistics.mean(by_mode["fine-tune"]) - statistics.mean(by_mode["scratch"])
        console.print(f"k={k}: fine-tune − scratch = {gain:+.3f}")
    longer = train_longer()
    console.print(
        f"train longer (10 + 10 epochs of the mlp template): the child starts at its parent's last "
        f"val_loss, {longer['start']:.4f} (0 epochs; from scratch: {longer['scratch_to_start']}); to the "
        "parent's best, "
        f"{longer['best']:.4f}: the child {longer['child_to_best']} epochs, from scratch "
        f"{longer['scratch_to_best']}; the child's 10 epochs took {longer['child_seconds']:.1f} s; "
        f"child == one uninterrupted 20-epoch run, bit for bit: {longer['bit_identical']}"
    )

if __name__ == "__main__":
    main()
