"""Time to 97 % test accuracy on digits: the MLP template through `fit()` against scikit-learn's
`MLPClassifier` with its defaults, on the same split, in one run.

    .venv/bin/python -m bench.time_to_accuracy [--rounds 3] [--target 0.97]

Both learn epoch by epoch on the template's training part (its seeded split: 20 % test, 10 % validation),
one thread each (torch.set_num_threads(1); BLAS limited with threadpoolctl). After every epoch the clock is
paused and the test part is scored; the time to the target is the training time up to the first epoch that
reaches it. fit() runs exactly as a job does (the template: 256-128 GELU MLP, dropout 0.2, Adam 1e-3, batch
64, a validation pass per epoch), observed through a Hook that scores each epoch's checkpoint. scikit-learn
runs `partial_fit` once per epoch, which is what its default `fit` does per iteration (Adam, lr 1e-3, batch
200, one hidden layer of 100 ReLU), on the pixels standardised per feature on the training part (fit()
normalises the same way), and once more on the raw pixels. Rounds rotate the order.
"""

import argparse
import copy
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bench.report import console, table, verdict
from bench.stack import machine
from models.checkpoint import load_model
from models.datasets import load_raw
from models.specs import JobSpec, parse_job_spec
from models.splits import split_indices
from models.templates import TEMPLATES
from models.train import EpochReport, Hook, fit

MAX_EPOCHS = 200


@dataclass
class Run:
    seconds: float | None  # training time to the target; None when it was not reached
    epochs: int
    accuracy: float  # test accuracy at that epoch (or the last one)


def template_spec() -> JobSpec:
    raw = copy.deepcopy(TEMPLATES["mlp"])
    raw["training"] |= {"epochs": MAX_EPOCHS, "checkpoint_every": 1, "device": "cpu"}
    return parse_job_spec(raw)


def test_split(spec: JobSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw train and test arrays of the template's own split."""
    raw = load_raw(spec.dataset)
    assert raw.y is not None
    parts = split_indices(
        raw.info.num_samples,
        spec.training.validation_fraction,
        spec.training.test_fraction,
        spec.training.seed,
    )
    x = raw.x.reshape(len(raw.x), -1)
    return x[parts["train"]], raw.y[parts["train"]], x[parts["test"]], raw.y[parts["test"]]


class ScoreEachEpoch(Hook):
    """Scores every epoch's checkpoint on the test part with the clock paused; stops at the target."""

    def __init__(self, x_test: np.ndarray, y_test: np.ndarray, target: float) -> None:
        self.x, self.y, self.target = torch.tensor(x_test, dtype=torch.float32), y_test, target
        self.paused = 0.0
        self.run: Run | None = None
        self.started = time.perf_counter()

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        if report is None or self.run is not None:
            return
        paused = time.perf_counter()
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # scoring must not move training's RNG
            predicted = load_model(checkpoint)(self.x).argmax(1).numpy()
        accuracy = float((predicted == self.y).mean())
        if accuracy >= self.target or report.final:
            seconds = paused - self.started - self.paused
            self.run = Run(seconds if accuracy >= self.target else None, report.epoch, accuracy)
        self.paused += time.perf_counter() - paused

    def should_stop(self) -> bool:
        return self.run is not None


def time_fit(spec: JobSpec, x_test: np.ndarray, y_test: np.ndarray, target: float) -> Run:
    hook = ScoreEachEpoch(x_test, y_test, target)
    fit(spec, hook=hook)
    assert hook.run is not None
    return hook.run


def time_sklearn(data: tuple[np.ndarray, ...], target: float, seed: int, *, scaled: bool) -> Run:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, x_test, y_test = data
    if scaled:  # per-feature standardisation fitted on the training part, as fit() normalises
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = MLPClassifier(random_state=seed)  # the defaults
    classes = np.unique(y_train)
    spent, accuracy = 0.0, 0.0
    for epoch in range(1, MAX_EPOCHS + 1):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)
        spent += time.perf_counter() - started
        accuracy = float(model.score(x_test, y_test))
        if accuracy >= target:
            return Run(spent, epoch, accuracy)
    return Run(None, MAX_EPOCHS, accuracy)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (order alternates)")
    parser.add_argument("--target", type=float, default=0.97, help="test accuracy to reach")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = template_spec()
    data = test_split(spec)
    learners = {
        "nnforge fit()": lambda: time_fit(spec, data[2], data[3], args.target),
        "scikit-learn": lambda: time_sklearn(data, args.target, spec.training.seed, scaled=True),
        "scikit-learn, raw pixels": lambda: time_sklearn(data, args.target, spec.training.seed, scaled=False),
    }
    runs: dict[str, list[Run]] = {name: [] for name in learners}
    with threadpool_limits(limits=1):
        learners["scikit-learn"]()  # warm-up: imports and first-call costs of both, not counted
        learners["nnforge fit()"]()
        for r in range(args.rounds):  # repeats of the same seeded runs: only the timing varies
            names = list(learners)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                runs[name].append(learners[name]())
    rows = []
    for name, results in runs.items():
        reached = [r.seconds for r in results if r.seconds is not None]
        rows.append(
            [
                name,
                f"{statistics.median(reached):.3f}" if reached else "not reached",
                f"{min(reached):.3f}–{max(reached):.3f}" if reached else "",
                " ".join(str(r.epochs) for r in results),
                " ".join(f"{r.accuracy:.3f}" for r in results),
                f"{len(reached)}/{len(results)}",
            ]
        )
    fit_times = [r.seconds for r in runs["nnforge fit()"]]
    sk_times = [r.seconds for r in runs["scikit-learn"]]
    ratios = [a / b for a, b in zip(fit_times, sk_times, strict=True) if a is not None and b is not None]
    met = bool(ratios) and statistics.median(ratios) < 1 and all(t is not None for t in fit_times)
    ratio = f"{statistics.median(ratios):.2f}" if ratios else "n/a"
    rows.append(["fit()/scikit-learn (time)", ratio, "", "", "", verdict(met)])
    console.print(
        table(
            f"Time to {args.target:.0%} test accuracy on digits, seconds of training (median of "
            f"{args.rounds} rounds, seed {spec.training.seed})",
            ["learner", "median s", "range", "epochs", "test accuracy", "reached"],
            rows,
            machine() + "; 1 thread each",
        )
    )


if __name__ == "__main__":
    main()
