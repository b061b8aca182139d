"""Sweeps: the issue's space searched in one process with plain Optuna calling `fit()` (the loop a user would
write) and through the service at parallel 1 (one worker slot) and parallel 2 (two slots); ASHA on the same
space; an architecture search across MLP and CNN families on digits.

    .venv/bin/python -m bench.sweep [--trials 24] [--epochs 20] [--nas-trials 12] [--nas-epochs 20]

Both sides sample with the `random` sampler seeded per trial (`seed + number`, as the service's driver does,
workers/sweep_study.py), so they try the same parameters. The service's wall time runs from the POST (after a
one-trial warm-up sweep) to the sweep's `finished_at`. Targets: service at parallel 1 ≤ 1.15 × the in-process
loop, the same best parameters and value; parallel 2 faster than parallel 1; ASHA prunes ≥ 40 % of trials
and trains ≤ 50 % of the epochs, its best within 0.5 points of the unpruned best; the NAS winner's validation
accuracy above the CNN template's (about 0.978 on this split).
"""

import argparse
import time
from datetime import datetime
from typing import Any

import optuna
import torch

from bench.report import console, table, verdict
from bench.stack import machine, service_stack, wait_for
from models.specs import parse_job_spec
from models.sweep_space import SweepSpec, realize
from models.templates import TEMPLATES
from models.train import EpochReport, Hook, fit
from workers import sweep_study

SPACE = {
    "optimizer.name": {"choices": ["sgd", "momentum", "rmsprop", "adam"]},
    "optimizer.lr": {"low": 1.0e-4, "high": 0.3, "log": True},
    "model.hidden_sizes": {"choices": [[64], [128, 64], [256, 128], [256, 128, 64]]},
    "model.activation": {"choices": ["relu", "tanh", "sigmoid"]},
    "model.dropout": {"low": 0.0, "high": 0.5},
}
OBJECTIVE = {"metric": "val_accuracy", "direction": "maximize"}


def search(trials: int, epochs: int, **changes: Any) -> dict[str, Any]:
    base = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp"},
        "training": {"epochs": epochs, "batch_size": 64, "device": "cpu"},
    }
    body = {"base": base, "space": SPACE, "objective": OBJECTIVE, "trials": trials, "sampler": "random"}
    return body | changes


class _Best(Hook):
    """The objective at the best epoch, as the service ranks a trial; reports each epoch when pruning."""

    def __init__(self, trial: optuna.trial.Trial | None) -> None:
        self.trial, self.value, self.epochs, self.pruned = trial, float("nan"), 0, False

    def on_epoch(self, report: EpochReport) -> None:
        self.epochs = report.epoch
        if report.is_best:
            self.value = report.metrics["val_accuracy"]
        if self.trial is not None:
            self.trial.report(report.metrics["val_accuracy"], report.epoch)
            self.pruned = not report.final and self.trial.should_prune()

    def should_stop(self) -> bool:
        return self.pruned


def in_process(body: dict[str, Any]) -> dict[str, Any]:
    """The peer: one process, Optuna in memory, ask → fit() → tell."""
    spec = SweepSpec.model_validate(body)
    torch.set_num_threads(1)  # as the service's training processes (TORCH_THREADS)
    study = optuna.create_study(direction="maximize", pruner=sweep_study.pruner(spec))
    started, epochs = time.perf_counter(), 0
    for number in range(spec.trials):
        study.sampler = sweep_study.sampler(spec, number)
        trial = study.ask()
        raw, _ = realize(spec, sweep_study.suggest_with(trial))
        hook = _Best(trial if spec.pruner != "none" else None)
        fit(parse_job_spec(raw), hook=hook)
        epochs += hook.epochs
        if hook.pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, hook.value)
    best = study.best_trial
    return {
        "wall": time.perf_counter() - started,
        "value": best.value,
        "number": best.number,
        "epochs": epochs,
    }


def through_service(body: dict[str, Any], *, slots: int) -> dict[str, Any]:
    """The same sweep POSTed to a service with a worker of `slots` slots."""
    with service_stack(worker_concurrency=slots) as stack, stack.client() as client:
        warm = client.post("/v1/sweeps", json=body | {"trials": 1, "parallel": slots}).json()["id"]
        _ended(client, warm)  # the API's dry check, each pool process's driver and a training process, warm
        started = time.time()
        sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
        sweep = _ended(client, sweep_id)
        trials = client.get(f"/v1/sweeps/{sweep_id}/trials").json()["items"]
        best = sweep["best"]
        job = client.get(f"/v1/jobs/{best['job_id']}").json()
    return {
        "wall": datetime.fromisoformat(sweep["finished_at"]).timestamp() - started,
        "value": best["value"],
        "number": best["number"],
        "params": best["params"],
        "epochs": sum(t["epochs_run"] for t in trials),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "test_accuracy": job["best_test_metrics"].get("test_accuracy"),
        "arch": job["spec"]["model"],
    }


def _ended(client: Any, sweep_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        return sweep if sweep["status"] != "running" else None

    return wait_for(ended, timeout=3600, interval=0.2, what=f"sweep {sweep_id}")


def nas(trials: int, epochs: int) -> dict[str, Any]:
    """MLP and CNN families in one space; conv_blocks is searched under the CNN choice only."""
    cnn = TEMPLATES["cnn"]["model"]
    body = {
        "name": "nas",
        "base": {"dataset": {"name": "digits"}, "model": {"arch": "mlp"}, "training": {"epochs": epochs}},
        "space": {
            "model": {
                "choices": [
                    {"arch": "mlp", "hidden_sizes": [256, 128], "activation": "gelu", "dropout": 0.2},
                    {**cnn, "hidden_sizes": [64]},
                    {**cnn, "hidden_sizes": [128], "dropout": 0.2},
                ]
            },
            "model.conv_blocks": {
                "choices": [
                    [{"channels": 16}, {"channels": 32}],
                    [{"channels": 32}, {"channels": 64}],
                    [{"channels": 16}, {"channels": 32}, {"channels": 64}],
                ]
            },
            "optimizer.lr": {"low": 3e-4, "high": 5e-3, "log": True},
        },
        "objective": OBJECTIVE,
        "trials": trials,
        "parallel": 2,
        "sampler": "tpe",
    }
    return through_service(body, slots=2)


def _shown(what: str, measured: dict[str, Any]) -> dict[str, Any]:
    console.print(f"{what}: {measured}", soft_wrap=True)  # as it comes: a long run's parts survive a failure
    return measured


def _network(model: dict[str, Any]) -> str:
    convs = [block["channels"] for block in model.get("conv_blocks", [])]
    return (
        f"{model['arch']} conv {convs} fc {model['hidden_sizes']}"
        if convs
        else f"mlp {model['hidden_sizes']}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--nas-trials", type=int, default=12)
    parser.add_argument("--nas-epochs", type=int, default=20)
    args = parser.parse_args(argv)
    loop = _shown("in-process", in_process(search(args.trials, args.epochs)))
    one = _shown("parallel 1", through_service(search(args.trials, args.epochs, parallel=1), slots=1))
    two = _shown("parallel 2", through_service(search(args.trials, args.epochs, parallel=2), slots=2))
    asha = _shown(
        "ASHA", through_service(search(args.trials, args.epochs, parallel=2, pruner="asha"), slots=2)
    )
    found = _shown("NAS", nas(args.nas_trials, args.nas_epochs))
    ratio = one["wall"] / loop["wall"]
    full = args.trials * args.epochs
    rows = [
        [
            "in-process Optuna + fit()",
            f"{loop['wall']:.1f}",
            "1.00",
            f"#{loop['number']} {loop['value']:.4f}",
            "",
            "",
        ],
        [
            "service, parallel 1",
            f"{one['wall']:.1f}",
            f"{ratio:.2f}",
            f"#{one['number']} {one['value']:.4f}",
            "≤ 1.15×, same best",
            verdict(
                ratio <= 1.15 and one["number"] == loop["number"] and abs(one["value"] - loop["value"]) < 1e-6
            ),
        ],
        [
            "service, parallel 2 (2 slots)",
            f"{two['wall']:.1f}",
            f"{two['wall'] / loop['wall']:.2f}",
            f"#{two['number']} {two['value']:.4f}",
            "faster than parallel 1",
            verdict(two["wall"] < one["wall"]),
        ],
        [
            "service, ASHA, parallel 2",
            f"{asha['wall']:.1f}",
            f"{asha['wall'] / loop['wall']:.2f}",
            f"#{asha['number']} {asha['value']:.4f}; {asha['pruned']}/{args.trials} pruned, "
            f"{asha['epochs']}/{full} epochs",
            "≥ 40 % pruned, ≤ 50 % epochs, best within 0.005",
            verdict(
                asha["pruned"] >= 0.4 * args.trials
                and asha["epochs"] <= 0.5 * full
                and abs(asha["value"] - two["value"]) <= 0.005
            ),
        ],
        [
            f"NAS: MLP + CNN, {args.nas_trials} × {args.nas_epochs} epochs",
            f"{found['wall']:.1f}",
            "",
            f"{_network(found['arch'])}, lr {found['params']['optimizer.lr']:.2g}: val {found['value']:.4f}, "
            f"test {found['test_accuracy']:.4f}",
            "val > 0.978 (CNN template)",
            verdict(found["value"] > 0.978),
        ],
    ]
    console.print(
        table(
            f"Sweeps: {args.trials} trials × {args.epochs} epochs of the issue's space on digits (random)",
            ["run", "wall s", "× in-process", "best trial", "target", "met"],
            rows,
            caption=machine(),
        )
    )


if __name__ == "__main__":
    main()
