"""Which optimizer kernel trains fastest: torch's default, `foreach` or `fused`, per optimizer and network.

    .venv/bin/python -m bench.optimizer_kernels [--rounds 5] [--arch mlp cnn]

The benchmarks' baseline loop (bench/baseline.py: same data, network, seed and step) runs one epoch per
kernel in turn, round after round (the order rotates), so every kernel sees the same moments of this noisy
machine. The table gives each kernel's median epoch speed relative to torch's default kernel. `models.optim`'s
`auto` (what fit() uses) is the fused kernel where torch has one for the device, chosen from this table.
"""

import argparse
import copy
import statistics
import time

import torch

from bench.baseline import plain_epochs, plain_run
from bench.report import console, table
from bench.train_throughput import MODEL_OVERRIDES
from models.optim import Kernel, fused_available
from models.specs import parse_job_spec
from models.templates import TEMPLATES

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
KERNELS: tuple[Kernel, ...] = ("torch_default", "foreach", "fused")


def _spec(template: str, optimizer: str):  # type: ignore[no-untyped-def]
    raw = copy.deepcopy(TEMPLATES[template])
    raw["model"] |= MODEL_OVERRIDES.get(template, {})
    raw["optimizer"] = {"name": optimizer, "lr": raw["optimizer"].get("lr", 0.01)}
    raw["training"] |= {"validation_fraction": 0.0, "test_fraction": 0.0, "device": "cpu"}
    return parse_job_spec(raw)


def measure(template: str, optimizer: str, rounds: int) -> dict[str, float]:
    """Kernel -> median epoch speed relative to torch's default kernel."""
    spec = _spec(template, optimizer)
    probe = [torch.nn.Parameter(torch.zeros(1))]
    kernels = [k for k in KERNELS if k != "fused" or fused_available(optimizer, probe)]
    loops = {k: plain_epochs(plain_run(spec, kernel=k)) for k in kernels}
    for loop in loops.values():  # warm-up
        loop()
    seconds: dict[str, list[float]] = {k: [] for k in kernels}
    for r in range(rounds):
        for kernel in kernels[r % len(kernels) :] + kernels[: r % len(kernels)]:
            started = time.perf_counter()
            loops[kernel]()
            seconds[kernel].append(time.perf_counter() - started)
    return {
        k: statistics.median(d / s for d, s in zip(seconds["torch_default"], seconds[k], strict=True))
        for k in kernels
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="epochs per kernel (default 9)")
    parser.add_argument("--arch", choices=("mlp", "cnn"), nargs="+", default=["mlp", "cnn"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for template in args.arch:
        for optimizer in OPTIMIZERS:
            speed = measure(template, optimizer, args.rounds)
            best = max(speed, key=speed.__getitem__)
            rows.append(
                [
                    f"{template} / {optimizer}",
                    *(f"{speed[k]:.2f}" if k in speed else "—" for k in KERNELS),
                    best,
                ]
            )
    console.print(
        table(
            "Epoch speed per optimizer kernel, relative to torch's default (higher is faster)",
            ["network / optimizer", *KERNELS, "fastest"],
            rows,
            f"plain loop, 1 torch thread, median of {args.rounds} paired epochs; —: no such kernel here",
        )
    )


if __name__ == "__main__":
    main()
