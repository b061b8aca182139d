"""The GPU check (bench/gpu_check.sh runs it on a lent GPU machine, in under 5 minutes):

1. loss curves: each architecture's bench spec trained by `fit()` on the CPU and on the GPU from the same
   seed; the per-epoch training losses must agree within a tolerance (the GAN's looser: its latent noise is
   drawn on the device, so the two runs see different noise);
2. throughput on the GPU with large batches: `fit()` against a plain hand-written loop (data resident on
   the GPU, the same network and optimizer), fp32 (TF32 matmuls, fit's default on CUDA, which stays set
   for the plain loop run after it in the same process), fit() with bf16 autocast and, once per network,
   fit() with `training.compile`. The datasets are tiled
   (digits ×50, the Gaussian ring ×25) so that an epoch holds many large batches.

    .venv/bin/python -m bench.gpu_check [--device cuda] [--quick]

`--device cpu` runs the same code with the CPU standing in for the GPU (both curves on the CPU must then agree
exactly, small batches): the check of the script itself on a machine without a GPU.
"""

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.report import console, table, verdict
from bench.stack import machine
from bench.train_throughput import MODEL_OVERRIDES
from models.archs.gan import GAN, gan_value, generator_loss
from models.data import prepare
from models.datasets import load_raw
from models.optim import build_optimizer
from models.raw_dataset import RawDataset
from models.registry import get_architecture
from models.specs import JobSpec, parse_job_spec
from models.templates import TEMPLATES
from models.train import EpochReport, Hook, fit

ARCHS = ("mlp", "cnn", "rnn", "gan")
CURVE_EPOCHS = {"mlp": 8, "cnn": 5, "rnn": 5, "gan": 10}
TOLERANCE = {"mlp": 0.05, "cnn": 0.05, "rnn": 0.05, "gan": 0.25}  # relative, per epoch (GAN: its mean)
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
        self.losses: list[float] = []
        self.stamps: list[float] = []

    def on_epoch(self, report: EpochReport) -> None:
        if report.metrics.get("train_loss") is not None:
            self.losses.append(report.metrics["train_loss"])
        else:  # a GAN: the discriminator's loss
            self.losses.append(report.metrics["train_d_loss"])
        self.stamps.append(time.perf_counter())


def curves(device: str, quick: bool) -> tuple[list[list[str]], bool]:
    rows, ok = [], True
    for arch in ARCHS:
        epochs = max(2, CURVE_EPOCHS[arch] // (2 if quick else 1))
        runs = []
        for where in ("cpu", device):
            recorder = Recorder()
            fit(spec_for(arch, device=where, epochs=epochs), hook=recorder)
            runs.append(recorder.losses)
        cpu, other = np.array(runs[0]), np.array(runs[1])
        if arch == "gan":
            gap = abs(other.mean() - cpu.mean()) / max(abs(cpu.mean()), 1e-3)
        else:
            gap = float(np.max(np.abs(other - cpu) / np.maximum(np.abs(cpu), 1e-3)))
        agree = gap <= TOLERANCE[arch]
        ok &= agree
        rows.append(
            [
                arch,
                str(epochs),
                f"{cpu[-1]:.4f}",
                f"{other[-1]:.4f}",
                f"{gap:.2e}",
                f"{TOLERANCE[arch]}",
                verdict(agree),
            ]
        )
    return rows, ok


def tiled(name: str, times: int) -> RawDataset:
    raw = load_raw(parse_job_spec({"dataset": {"name": name}, "model": {"arch": "mlp"}}).dataset)
    x = np.concatenate([raw.x] * times)
    y = None if raw.y is None else np.concatenate([raw.y] * times)
    info = raw.info.model_copy(update={"num_samples": len(x)})
    return RawDataset(info=info, x=x, y=y, quality=raw.quality)


def plain_loop(spec: JobSpec, raw: RawDataset, device: torch.device, epochs: int) -> float:
    """Seconds for `epochs` epochs of the textbook loop, data and network on `device`."""
    data = prepare(raw, spec.model.problem(raw.info), spec.training, device)
    x, y = data.x["train"], data.y["train"]
    torch.manual_seed(spec.training.seed)
    model = get_architecture(spec.model.arch).build(spec.model, spec.model.problem(raw.info)).to(device)
    step: Callable[[Tensor, Tensor | None], None]
    if isinstance(model, GAN):
        gan = spec.model
        assert gan.arch == "gan"
        g_opt = build_optimizer(spec.optimizer, list(model.generator.parameters()))
        d_opt = build_optimizer(spec.optimizer, list(model.discriminator.parameters()))

        def step(xb: Tensor, yb: Tensor | None) -> None:
            d_opt.zero_grad()
            fake = model.generator(torch.randn(len(xb), gan.latent_dim, device=device)).detach()
            (-gan_value(model.discriminator(xb), model.discriminator(fake))).backward()
            d_opt.step()
            g_opt.zero_grad()
            fake_logits = model.discriminator(
                model.generator(torch.randn(len(xb), gan.latent_dim, device=device))
            )
            generator_loss(fake_logits, gan.loss).backward()
            g_opt.step()

    else:
        optimizer = build_optimizer(spec.optimizer, list(model.parameters()))

        def step(xb: Tensor, yb: Tensor | None) -> None:
            assert yb is not None
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()

    batch = spec.training.batch_size

    def epoch() -> None:
        order = torch.randperm(len(x), device=device)
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            step(x[index], None if y is None else y[index])

    epoch()  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(epochs):
        epoch()
    _sync(device)
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
            rates["plain"].append(samples / plain_loop(fp32, raw, torch.device(device), epochs))
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
    console.print(
        table(
            f"Loss curves, CPU against {args.device} (same seed; relative gap per epoch, GAN: of the mean)",
            ["arch", "epochs", "cpu final", f"{args.device} final", "max gap", "tolerance", "agree"],
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
