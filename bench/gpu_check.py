"""The GPU check (bench/gpu_check.sh runs it on a lent GPU machine, in under 5 minutes):

1. training agrees across devices: each architecture's bench spec trained by `fit()` on the CPU and on the
   device from the same seed (the same split, initial weights and batch order).
   * A supervised network's per-epoch training losses must agree within 5 % (relative, every epoch). The runs
     differ only in floating point (the GPU's kernels sum in other orders; fp32 matmuls run on TF32, fit's
     default on CUDA, with a 10-bit mantissa), a drift that grows over the epochs of these short runs; 5 % is
     a bound chosen to let that drift pass and a real bug (a wrong view, a skipped step) fail, not a measured
     gap: no GPU run has measured it yet. The table prints the gap to set it from.
   * A GAN draws its latent noise on the device, so the two runs see different noise: their curves cannot be
     compared epoch by epoch, and a balanced GAN's discriminator loss sits near 2·ln 2 whatever it learned.
     Both runs instead train the template to its end (80 epochs) and must each reach its sample quality (the
     ring's own measure, `models.datasets.ring_quality`, on the test split): at least 7 of the 8 modes covered
     and at least 70 % of the samples within 3σ of a mode, a bar the CPU runs of seeds 0, 1 and 2 clear in
     tests/models/test_learning.py. The device's run is, in effect, the CPU's with another seed.
2. throughput on the GPU with large batches: `fit()` against the benchmarks' baseline (bench/baseline.py: a
   plain loop over the same assembled run, data resident on the GPU), fp32 (TF32 matmuls, set by the assembly
   for both), fit() with bf16 autocast and, once per network, fit() with `training.compile`. The datasets are
   tiled (digits ×50, the Gaussian ring ×25) so that an epoch holds many large batches.

    .venv/bin/python -m bench.gpu_check [--device cuda] [--quick]

`--device cpu` runs the same code with the CPU standing in for the GPU, small batches: the check of the script
itself on a machine without a GPU. Both runs are then on the CPU and must agree exactly: every epoch's metrics
of every architecture, bit for bit (the GAN's quality targets apply too).
"""

import argparse
import copy
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from bench.baseline import plain_epochs, plain_run
from bench.report import console, table, verdict
from bench.stack import machine
from bench.train_throughput import MODEL_OVERRIDES
from models.datasets import load_raw
from models.raw_dataset import RawDataset
from models.registry import get_architecture
from models.specs import JobSpec, parse_job_spec
from models.templates import TEMPLATES
from models.train import EpochReport, Hook, fit

ARCHS = ("mlp", "cnn", "rnn", "gan")
CURVE_EPOCHS = {"mlp": 8, "cnn": 5, "rnn": 5, "gan": 80}  # the GAN's: its template's, which the targets need
LOSS_TOLERANCE = 0.05  # relative, per epoch, device against CPU (supervised networks)
# The GAN template's sample quality on the Gaussian ring after its 80 epochs (final, test split).
QUALITY_TARGETS = {"test_modes_covered": 7.0, "test_high_quality_fraction": 0.7}
GPU_BATCH = {"mlp": 1024, "cnn": 512, "rnn": 512, "gan": 1024}
TILE = {"digits": 50, "gaussian-ring": 25}


def spec_for(
    arch: str, *, device: str, epochs: int, batch_size: int | None = None, **training: Any
) -> JobSpec:
    raw = copy.deepcopy(TEMPLATES[arch])
    raw["model"] |= MODEL_OVERRIDES.get(arch, {})
    raw["training"] |= {"epochs": epochs, "device": device, "checkpoint_every": epochs, **training}
    if batch_size is not None:
        raw["training"]["batch_size"] = batch_size
    return parse_job_spec(raw)


class Recorder(Hook):
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []  # every epoch's metrics; the last holds the test_* ones
        self.stamps: list[float] = []

    def on_epoch(self, report: EpochReport) -> None:
        self.epochs.append(report.metrics)
        self.stamps.append(time.perf_counter())


def curves(device: str, quick: bool) -> tuple[list[list[str]], bool]:
    rows, ok = [], True
    exact = device == "cpu"
    for arch in ARCHS:
        generative = get_architecture(arch).generative
        epochs = CURVE_EPOCHS[arch] if generative or not quick else max(2, CURVE_EPOCHS[arch] // 2)
        runs = []
        for where in ("cpu", device):
            recorder = Recorder()
            fit(spec_for(arch, device=where, epochs=epochs), hook=recorder)
            runs.append(recorder.epochs)
        if generative:
            cells, agree = _quality_rows(*runs)
        else:
            cells, agree = _loss_rows(*runs, tolerance=0.0 if exact else LOSS_TOLERANCE)
        if exact:  # both runs on the CPU: every metric of every epoch equal, the GAN's included
            agree &= runs[0] == runs[1]
        ok &= agree
        rows.append([arch, str(epochs), *cells, verdict(agree)])
    return rows, ok


def _loss_rows(
    cpu: list[dict[str, float]], other: list[dict[str, float]], *, tolerance: float
) -> tuple[list[str], bool]:
    a = np.array([epoch["train_loss"] for epoch in cpu])
    b = np.array([epoch["train_loss"] for epoch in other])
    gap = float(np.max(np.abs(b - a) / np.maximum(np.abs(a), 1e-3)))
    cells = ["train loss, max gap per epoch", f"{a[-1]:.4f}", f"{b[-1]:.4f}", f"{gap:.2e} ≤ {tolerance:g}"]
    return cells, gap <= tolerance


def _quality_rows(cpu: list[dict[str, float]], other: list[dict[str, float]]) -> tuple[list[str], bool]:
    def reached(run: list[dict[str, float]]) -> bool:
        return all(run[-1][name] >= target for name, target in QUALITY_TARGETS.items())

    def figures(run: list[dict[str, float]]) -> str:
        return " / ".join(f"{run[-1][name]:g}" for name in QUALITY_TARGETS)

    targets = " / ".join(f"≥ {target:g}" for target in QUALITY_TARGETS.values())
    cells = ["test modes covered / share within 3σ", figures(cpu), figures(other), targets]
    return cells, reached(cpu) and reached(other)


def tiled(name: str, times: int) -> RawDataset:
    raw = load_raw(parse_job_spec({"dataset": {"name": name}, "model": {"arch": "mlp"}}).dataset)
    x = np.concatenate([raw.x] * times)
    y = None if raw.y is None else np.concatenate([raw.y] * times)
    info = raw.info.model_copy(update={"num_samples": len(x)})
    return RawDataset(info=info, x=x, y=y, quality=raw.quality)


def plain_seconds(spec: JobSpec, raw: RawDataset, epochs: int) -> float:
    """Seconds for `epochs` epochs of the baseline (bench/baseline.py) after a warm-up one, on the spec's
    device."""
    run = plain_run(spec, raw)
    epoch = plain_epochs(run)
    epoch()  # warm-up
    _sync(run.device)
    started = time.perf_counter()
    for _ in range(epochs):
        epoch()
    _sync(run.device)
    return time.perf_counter() - started


def fit_seconds(spec: JobSpec, raw: RawDataset) -> float:
    recorder = Recorder()
    fit(spec, hook=recorder, dataset=raw)
    return recorder.stamps[-1] - recorder.stamps[0]  # the epochs after the first (warm-up) one


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(device: str, quick: bool, rounds: int) -> list[list[str]]:
    rows = []
    for arch in ARCHS:
        name = TEMPLATES[arch]["dataset"]["name"]
        raw = tiled(name, TILE[name] if device == "cuda" else 2)
        batch = GPU_BATCH[arch] if device == "cuda" else None
        epochs = 2 if quick else 4
        base = {"validation_fraction": 0.0, "test_fraction": 0.0}
        fp32 = spec_for(arch, device=device, epochs=epochs + 1, batch_size=batch, **base)
        samples = epochs * raw.info.num_samples
        rates: dict[str, list[float]] = {"fit": [], "plain": [], "fit bf16": [], "fit compiled": []}
        for round_ in range(rounds):
            rates["fit"].append(samples / fit_seconds(fp32, raw))
            rates["plain"].append(samples / plain_seconds(fp32, raw, epochs))
            if device == "cuda":  # bf16 autocast is CUDA-only
                bf16 = spec_for(
                    arch, device=device, epochs=epochs + 1, batch_size=batch, precision="bf16", **base
                )
                rates["fit bf16"].append(samples / fit_seconds(bf16, raw))
            if round_ == 0:  # once: compiling costs tens of seconds per network (the warm-up epoch holds it)
                compiled = spec_for(
                    arch, device=device, epochs=epochs + 1, batch_size=batch, compile=True, **base
                )
                rates["fit compiled"].append(samples / fit_seconds(compiled, raw))
        ratio = [a / b for a, b in zip(rates["fit"], rates["plain"], strict=True)]
        rows.append(
            [
                arch,
                f"{raw.info.num_samples:,} × {fp32.training.batch_size}",
                *(f"{statistics.median(v):,.0f}" if v else "–" for v in rates.values()),
                f"{statistics.median(ratio):.2f}",
                verdict(statistics.median(ratio) >= 0.95),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (the CPU half's smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu for the CPU half")
    torch.set_num_threads(1)
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU standing in for the GPU"
    caption = f"{where}; {machine()}"
    rows, ok = curves(args.device, args.quick)
    agreement = "exactly, every epoch's metrics" if args.device == "cpu" else "within the tolerances"
    console.print(
        table(
            f"Training, CPU against {args.device} from the same seed ({agreement})",
            ["arch", "epochs", "compared", "cpu", args.device, "bound", "agree"],
            rows,
            caption,
        )
    )
    console.print(
        table(
            f"fit() against a plain loop on {args.device}, samples/s (median of {args.rounds})",
            ["arch", "samples × batch", "fit", "plain", "fit bf16", "fit compiled", "fit/plain", "≥ 0.95"],
            throughput(args.device, args.quick, args.rounds),
            caption,
        )
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
