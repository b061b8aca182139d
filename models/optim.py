"""Optimizers (torch.optim, never hand-rolled) and learning-rate schedules from their specs."""

import math
from collections.abc import Callable
from typing import Any, Literal

from torch import nn
from torch.optim import SGD, Adagrad, Adam, Optimizer, RMSprop
from torch.optim.lr_scheduler import LambdaLR

from models.specs import AdaGradSpec, AdamSpec, MomentumSpec, RMSPropSpec, SGDSpec

_FACTORIES: dict[str, Callable[[Any, list[nn.Parameter], dict[str, bool]], Optimizer]] = {
    # SGD on the minibatch mean loss: W ← W − η·(1/m)Σ∂Lᵢ/∂W (the losses average over the batch).
    "sgd": lambda s, p, f: SGD(p, lr=s.lr, weight_decay=s.weight_decay, **f),
    "momentum": lambda s, p, f: SGD(
        p, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov, weight_decay=s.weight_decay, **f
    ),
    "adagrad": lambda s, p, f: Adagrad(p, lr=s.lr, eps=s.eps, weight_decay=s.weight_decay, **f),
    "rmsprop": lambda s, p, f: RMSprop(
        p, lr=s.lr, alpha=s.alpha, eps=s.eps, momentum=s.momentum, weight_decay=s.weight_decay, **f
    ),
    "adam": lambda s, p, f: Adam(p, lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay, **f),
}
# Where torch has a fused kernel for the optimizer on the parameters' device, one call updates every tensor:
# bench/optimizer_kernels.py measured epochs up to 1.33× faster (Adam, MLP) than torch's per-tensor default on
# the CPU and never slower; foreach was within noise of the default. RMSprop has no fused kernel; Adagrad's
# is CPU-only. On CUDA torch's default is already foreach.
_FUSED_DEVICES: dict[str, frozenset[str]] = {
    "sgd": frozenset({"cpu", "cuda"}),
    "momentum": frozenset({"cpu", "cuda"}),
    "adagrad": frozenset({"cpu"}),
    "rmsprop": frozenset(),
    "adam": frozenset({"cpu", "cuda"}),
}

AnyOptimizerSpec = SGDSpec | MomentumSpec | AdaGradSpec | RMSPropSpec | AdamSpec


Kernel = Literal["auto", "torch_default", "foreach", "fused"]


def build_optimizer(
    spec: AnyOptimizerSpec, parameters: list[nn.Parameter], kernel: Kernel = "auto"
) -> Optimizer:
    """The optimizer of `spec` over `parameters` (already on their device). `auto` is the fused kernel where
    torch has one for that device, else torch's default; the others exist for bench/optimizer_kernels.py."""
    if kernel == "auto":
        kernel = "fused" if fused_available(spec.name, parameters) else "torch_default"
    options: dict[str, bool] = {} if kernel == "torch_default" else {kernel: True}
    return _FACTORIES[spec.name](spec, parameters, options)


def fused_available(name: str, parameters: list[nn.Parameter]) -> bool:
    devices = {p.device.type for p in parameters}
    return (
        len(devices) == 1
        and devices <= _FUSED_DEVICES[name]
        and all(p.is_floating_point() for p in parameters)
    )


def lr_multiplier(spec: AnyOptimizerSpec, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """The factor on the base learning rate after `step` optimizer steps: warm-up, then the schedule."""
    schedule, warmup = spec.schedule, spec.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule is None:
            return 1.0
        if schedule.kind == "step":
            return schedule.gamma ** (step // (schedule.step_size * steps_per_epoch))
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        floor = schedule.min_lr_ratio
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_scheduler(
    optimizer: Optimizer, spec: AnyOptimizerSpec, steps_per_epoch: int, total_steps: int
) -> LambdaLR | None:
    if spec.schedule is None and spec.warmup_steps == 0:
        return None
    return LambdaLR(optimizer, lr_multiplier(spec, steps_per_epoch, total_steps))
