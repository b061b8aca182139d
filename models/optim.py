"""Optimizers (torch.optim, never hand-rolled) and learning-rate schedules from their specs."""

import math
from collections.abc import Callable
from typing import Any

from torch import nn
from torch.optim import SGD, Adagrad, Adam, Optimizer, RMSprop
from torch.optim.lr_scheduler import LambdaLR

from models.specs import AdaGradSpec, AdamSpec, MomentumSpec, RMSPropSpec, SGDSpec

_FACTORIES: dict[str, Callable[[Any, list[nn.Parameter]], Optimizer]] = {
    # SGD on the minibatch mean loss: W ← W − η·(1/m)Σ∂Lᵢ/∂W (the losses average over the batch).
    "sgd": lambda s, p: SGD(p, lr=s.lr, weight_decay=s.weight_decay),
    "momentum": lambda s, p: SGD(
        p, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov, weight_decay=s.weight_decay
    ),
    "adagrad": lambda s, p: Adagrad(p, lr=s.lr, eps=s.eps, weight_decay=s.weight_decay),
    "rmsprop": lambda s, p: RMSprop(
        p, lr=s.lr, alpha=s.alpha, eps=s.eps, momentum=s.momentum, weight_decay=s.weight_decay
    ),
    "adam": lambda s, p: Adam(p, lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay),
}

AnyOptimizerSpec = SGDSpec | MomentumSpec | AdaGradSpec | RMSPropSpec | AdamSpec


def build_optimizer(spec: AnyOptimizerSpec, parameters: list[nn.Parameter]) -> Optimizer:
    return _FACTORIES[spec.name](spec, parameters)


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
