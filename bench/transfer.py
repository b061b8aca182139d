"""Few-shot transfer on digits through the service (issue 14): pretrain on one half, learn a new task on the
other from k labelled samples per class, against the same network trained from scratch; and "train longer"
from a checkpoint.

    .venv/bin/python -m bench.transfer [--seeds 4] [--ks 5 20] [--broker redis|embedded]

Protocol (the issue's, measured there with plain PyTorch): digits split into two fixed halves by a seeded
permutation. The parent, a 64-128-64 ReLU MLP (hidden_sizes [128, 64]), trains on all ten classes of half A
for 30 epochs (Adam 1e-3, batch 16, no validation or test split). The new task is the parity of the digit on
half B: k samples per class (odd, even) drawn per seed train the child for 100 epochs at batch 16, and the
rest of half B scores it. Three children per seed and k: fine-tune (`init_from: {load: body}`), head only
(`{load: body, freeze: body}`) and scratch (no init_from), each from the parent's `latest` checkpoint.

Through the service: a private API, one worker (one slot) and Redis + PostgreSQL (or the embedded SQLite and
filesystem broker) from `bench.stack`, driven by the Python client as a user would. The halves are custom, so
half A and each seed's k-shot draw are uploaded as .npz datasets (POST /v1/datasets) and the jobs train on
them whole. Scoring: the child's `latest` checkpoint is downloaded (GET /v1/jobs/{id}/checkpoints/latest)
and rebuilt here with `load_model` (raw inputs in), its accuracy taken on the rest of half B. Not the job's
own test split: that is a seeded draw of at most half its dataset (test_fraction ≤ 0.5), so it cannot be the
rest; not predict either: its first call per checkpoint exports ONNX, seconds each for 24 children, for the
same network.

Beside each service figure, the in-process baseline: `models.train.fit` (the function the worker runs) on the
same uploaded bytes read back with `read_dataset_file` (as the worker reads them), given the parent's
checkpoint as the worker gives it. It runs while the worker trains the parents. One difference from the
plain-PyTorch reference: the service standardises each pixel on the training part (the child keeps the
parent's statistics) where the reference divided by 16.

"Train longer", through the service: the MLP template (10 epochs, its digits split) trains; a child with
`{checkpoint: latest, load: all, optimizer_state: keep}` trains 10 more; a third job trains 20 epochs
uninterrupted. The child starts at its parent's last epoch (keep needs the latest checkpoint, the one with
optimizer state): 0 epochs to be back where the parent stopped, against the epochs the uninterrupted run
needs to get there; then the epochs each needs to reach the parent's best validation loss (below its last
when the parent's best epoch was an earlier one). Each job's val_loss per epoch is read from
GET /v1/jobs/{id}/metrics; the child's and the 20-epoch job's latest checkpoints are compared tensor by
tensor.
"""

import argparse
import copy
import io
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.client.client import Client, Job, NnforgeError
from app.db.job_state import JobStatus
from bench.report import console, table
from bench.stack import machine, service_stack
from models.checkpoint import load_model, read_checkpoint
from models.datasets import builtin_dataset
from models.raw_dataset import RawDataset
from models.specs import parse_job_spec
from models.templates import TEMPLATES
from models.train import fit
from models.uploads import read_dataset_file

# The plain-PyTorch means over 4 seeds (inputs / 16), for the table beside ours.
REFERENCE = {5: {"fine-tune": 0.805, "head only": 0.762, "scratch": 0.742},
             20: {"fine-tune": 0.868, "head only": 0.865, "scratch": 0.843}}  # fmt: skip
MODES: dict[str, dict[str, Any] | None] = {
    "fine-tune": {"load": "body", "freeze": "none"},
    "head only": {"load": "body", "freeze": "body"},
    "scratch": None,
}
PRETRAIN_EPOCHS, CHILD_EPOCHS, LONGER_EPOCHS = 30, 100, 10
SUBMIT_TRIES = 5
ALL_TRAIN = {"validation_fraction": 0.0, "test_fraction": 0.0, "device": "cpu"}


@dataclass
class Upload:
    """A dataset as uploaded: its id in the service, and the arrays the worker reads from its bytes."""

    id: str
    raw: RawDataset


def upload(client: Client, folder: Path, name: str, x: np.ndarray, y: np.ndarray) -> Upload:
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    path = folder / f"{name}.npz"
    path.write_bytes(buffer.getvalue())
    dataset = client.upload_dataset(path, name=name)
    return Upload(dataset["id"], read_dataset_file(buffer.getvalue(), name=name, file_format="npz"))


def spec(dataset_id: str, epochs: int, seed: int) -> dict[str, Any]:
    return {
        "dataset": {"id": dataset_id},
        "model": {"arch": "mlp", "hidden_sizes": [128, 64], "activation": "relu"},
        "optimizer": {"name": "adam", "lr": 0.001},
        "training": {"epochs": epochs, "batch_size": 16, "seed": seed} | ALL_TRAIN,
    }


def submit(client: Client, body: dict[str, Any], **kwargs: Any) -> Job:
    """POST a job; a 503 (the dry run starved on the loaded machine) is retried a second later."""
    for _ in range(SUBMIT_TRIES - 1):
        try:
            return client.submit(body, **kwargs)
        except NnforgeError as error:
            if error.status != 503:
                raise
            time.sleep(1.0)
    return client.submit(body, **kwargs)


def finished(job: Job) -> Job:
    job = job.wait()
    if job.status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"job {job.id} {job.status}: {job.data.get('error')}")
    return job


def latest_checkpoint(job: Job) -> bytes:
    return job.client.request("GET", f"/v1/jobs/{job.id}/checkpoints/latest").content


def accuracy(checkpoint: bytes | dict[str, Any], x: torch.Tensor, y: np.ndarray) -> float:
    with torch.no_grad():
        predicted = load_model(checkpoint)(x).argmax(1).numpy()
    return float((predicted == y).mean())


@dataclass
class Child:
    k: int
    mode: str
    seed: int
    dataset: Upload
    rest: np.ndarray  # indices into digits of the samples that score it


def few_shot(
    client: Client, folder: Path, seeds: int, ks: list[int], longer: "TrainLonger"
) -> dict[int, dict[str, dict[str, list[float]]]]:
    """{k: {mode: {"service": [per seed], "fit": [per seed]}}}."""
    digits = builtin_dataset("digits")
    assert digits.y is not None
    halves = np.random.default_rng(0).permutation(len(digits.y))
    a, b = np.sort(halves[: len(halves) // 2]), np.sort(halves[len(halves) // 2 :])
    half_a = upload(client, folder, "digits-half-a", digits.x[a], digits.y[a])
    parents = {seed: submit(client, spec(half_a.id, PRETRAIN_EPOCHS, seed)) for seed in range(seeds)}
    longer.submit(client)  # the worker has the "train longer" jobs to do while fit() runs here too

    parity = digits.y[b] % 2
    children: list[Child] = []
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        for k in ks:
            drawn = np.concatenate(
                [rng.choice(np.flatnonzero(parity == c), k, replace=False) for c in (0, 1)]
            )
            train = upload(client, folder, f"parity-k{k}-seed{seed}", digits.x[b[drawn]], parity[drawn])
            rest = b[np.setdiff1d(np.arange(len(b)), drawn)]
            children += [Child(k, mode, seed, train, rest) for mode in MODES]

    # The in-process baseline, while the worker trains the parents.
    scores: dict[int, dict[str, dict[str, list[float]]]] = {
        k: {mode: {"service": [], "fit": []} for mode in MODES} for k in ks
    }
    fit_parents = {
        seed: fit(parse_job_spec(spec(half_a.id, PRETRAIN_EPOCHS, seed)), dataset=half_a.raw).checkpoint
        for seed in range(seeds)
    }
    for child in children:
        init = MODES[child.mode]
        raw = spec(child.dataset.id, CHILD_EPOCHS, child.seed)
        raw |= {"init_from": {"job": "00be0c4e"} | init} if init else {}  # the parent is given directly
        parent = fit_parents[child.seed] if init else None
        trained = fit(parse_job_spec(raw), dataset=child.dataset.raw, parent=parent).checkpoint
        x_rest = torch.tensor(digits.x[child.rest]).flatten(1)
        scores[child.k][child.mode]["fit"].append(accuracy(trained, x_rest, digits.y[child.rest] % 2))

    parent_ids = {seed: finished(job).id for seed, job in parents.items()}
    jobs = []
    for child in children:
        init = MODES[child.mode]
        from_parent = {"job": parent_ids[child.seed], "checkpoint": "latest"} | init if init else None
        jobs.append(submit(client, spec(child.dataset.id, CHILD_EPOCHS, child.seed), init_from=from_parent))
    for child, job in zip(children, jobs, strict=True):
        x_rest = torch.tensor(digits.x[child.rest]).flatten(1)
        score = accuracy(latest_checkpoint(finished(job)), x_rest, digits.y[child.rest] % 2)
        scores[child.k][child.mode]["service"].append(score)
    return scores


class TrainLonger:
    """The MLP template 10 epochs, a child 10 more with `optimizer_state: keep`, one run of 20: as jobs."""

    def __init__(self) -> None:
        self.raw = copy.deepcopy(TEMPLATES["mlp"])
        self.raw["training"] |= {"epochs": LONGER_EPOCHS, "device": "cpu"}

    def submit(self, client: Client) -> None:
        whole = self.raw | {"training": self.raw["training"] | {"epochs": 2 * LONGER_EPOCHS}}
        self.parent = submit(client, self.raw, name="longer-parent")
        self.whole = submit(client, whole, name="longer-whole")

    def measure(self, client: Client) -> dict[str, Any]:
        parent = finished(self.parent)
        keep = {"job": parent.id, "checkpoint": "latest", "load": "all", "optimizer_state": "keep"}
        child = finished(submit(client, self.raw, name="longer-child", init_from=keep))
        whole = finished(self.whole)
        parent_losses, child_losses, whole_losses = (_val_losses(j) for j in (parent, child, whole))
        target = min(parent_losses)
        start = parent_losses[-1]  # where the child starts: the parent's last epoch (its latest checkpoint)
        child_weights = read_checkpoint(latest_checkpoint(child))["model"]
        whole_weights = read_checkpoint(latest_checkpoint(whole))["model"]
        return {
            "best": target,
            "start": start,
            "scratch_to_start": _first_at(whole_losses, start),
            "child_to_best": 0 if start <= target else _first_at(child_losses, target),
            "scratch_to_best": _first_at(whole_losses, target),
            "child_seconds": _seconds(child.data["finished_at"]) - _seconds(child.data["started_at"]),
            "bit_identical": child_weights.keys() == whole_weights.keys()
            and all(torch.equal(value, whole_weights[key]) for key, value in child_weights.items()),
        }


def _val_losses(job: Job) -> list[float]:
    points = sorted(job.metrics(["val_loss"])["val_loss"], key=lambda point: point["step"])
    return [point["value"] for point in points]


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _first_at(losses: list[float], target: float) -> int | None:
    return next((epoch for epoch, loss in enumerate(losses, start=1) if loss <= target), None)


def _cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--broker", choices=("redis", "embedded"), default="redis")
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = machine()
    started = time.perf_counter()
    longer = TrainLonger()
    with service_stack(embedded=args.broker == "embedded") as stack, Client(stack.url, stack.token) as client:
        scores = few_shot(client, stack.folder, args.seeds, args.ks, longer)
        train_longer = longer.measure(client)
    seconds = time.perf_counter() - started
    rows = []
    for k, by_mode in scores.items():
        for mode, by_way in by_mode.items():
            reference = REFERENCE.get(k, {}).get(mode)
            service = by_way["service"]
            rows.append(
                [
                    str(k),
                    mode,
                    _cell(service),
                    " ".join(f"{v:.3f}" for v in service),
                    _cell(by_way["fit"]),
                    f"{reference:.3f}" if reference else "—",
                ]
            )
    broker = "Redis + PostgreSQL" if args.broker == "redis" else "filesystem + SQLite"
    console.print(
        table(
            f"Few-shot parity on digits' second half, jobs through the service ({broker}; "
            f"{args.seeds} seeds, whole bench {seconds:.0f} s)",
            [
                "k",
                "child",
                "service (mean ± sd)",
                "service per seed",
                "fit() in-process",
                "plain PyTorch (issue)",
            ],
            rows,
            info,
        )
    )
    pairs = [
        (s, f)
        for by_mode in scores.values()
        for w in by_mode.values()
        for s, f in zip(w["service"], w["fit"], strict=True)
    ]
    same = sum(s == f for s, f in pairs)
    console.print(f"service == fit() in-process for {same} of {len(pairs)} children")
    for k, by_mode in scores.items():
        fine_tune, scratch = by_mode["fine-tune"]["service"], by_mode["scratch"]["service"]
        gain = statistics.mean(fine_tune) - statistics.mean(scratch)
        console.print(f"k={k}: fine-tune − scratch = {gain:+.3f} (service)")
    t = train_longer
    console.print(
        f"train longer, as jobs ({LONGER_EPOCHS} + {LONGER_EPOCHS} epochs of the mlp template): the child "
        f"starts at its parent's last val_loss, {t['start']:.4f} (0 epochs; the uninterrupted run: "
        f"{t['scratch_to_start']}); to the parent's best, {t['best']:.4f}: the child {t['child_to_best']} "
        f"epochs, the uninterrupted run {t['scratch_to_best']}; the child job ran {t['child_seconds']:.1f} s "
        f"(claim to finish); child == the uninterrupted {2 * LONGER_EPOCHS}-epoch job, bit for bit: "
        f"{t['bit_identical']}"
    )


if __name__ == "__main__":
    main()
