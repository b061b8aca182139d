"""A run assembled once from its JobSpec: the seeded split and normalisation, the network, its procedure, the
optimizers and schedulers, mixed precision and the step context.

`fit()` and the benchmarks' baseline loop start from `assemble`; the dry check and `load_model`, which have no
data to prepare, use its parts (`build_network`, `build_optimizers`). No other code sets up a run.
"""

import logging
import math
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from models.data import PreparedData, prepare
from models.dataset_info import DatasetInfo
from models.errors import SpecError
from models.optim import Kernel, build_optimizer, build_scheduler
from models.procedures import Procedure, StepContext
from models.raw_dataset import RawDataset
from models.registry import Architecture, get_architecture
from models.specs import JobSpec, Problem

log = logging.getLogger("nnforge.train")

Autocast = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Network:
    architecture: Architecture
    problem: Problem  # what the network maps, for this dataset
    module: nn.Module


def build_network(spec: JobSpec, info: DatasetInfo) -> Network:
    """The spec's network for a dataset shaped like `info`, on the CPU, drawn from torch's global RNG."""
    problem = spec.model.problem(info)
    architecture = get_architecture(spec.model.arch)
    return Network(architecture, problem, architecture.build(spec.model, problem))


@dataclass(frozen=True)
class Optimizers:
    optimizers: dict[str, Optimizer]  # one per parameter group of the procedure
    schedulers: dict[str, LRScheduler]  # only the groups whose optimizer spec has a schedule or warm-up
    grad_clip_norm: dict[str, float | None]


def build_optimizers(
    spec: JobSpec, procedure: Procedure, model: nn.Module, steps_per_epoch: int, kernel: Kernel = "auto"
) -> Optimizers:
    """An optimizer per parameter group (the group's own spec, else the job's), over `model` on its device."""
    total_steps = steps_per_epoch * spec.training.epochs
    optimizers: dict[str, Optimizer] = {}
    schedulers: dict[str, LRScheduler] = {}
    clip: dict[str, float | None] = {}
    for group, (params, override) in procedure.parameter_groups(model, spec.model).items():
        opt_spec = override or spec.optimizer
        optimizers[group] = build_optimizer(opt_spec, params, kernel)
        scheduler = build_scheduler(optimizers[group], opt_spec, steps_per_epoch, total_steps)
        if scheduler is not None:
            schedulers[group] = scheduler
        clip[group] = opt_spec.grad_clip_norm
    return Optimizers(optimizers, schedulers, clip)


@dataclass(frozen=True)
class Run:
    """Everything a training loop needs; the loop owns only its progress."""

    spec: JobSpec
    device: torch.device
    procedure: Procedure
    data: PreparedData  # train/val/test tensors on `device`, normalised
    model: nn.Module
    optimizers: dict[str, Optimizer]
    schedulers: dict[str, LRScheduler]
    scaler: torch.amp.GradScaler | None
    autocast: Autocast
    step_ctx: StepContext  # what `procedure.train_step` receives (its network compiled if training.compile)
    shuffle: torch.Generator  # the batch order's own RNG, on the CPU: the same order on every device
    steps_per_epoch: int


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise SpecError.single("training.device", requested, "no CUDA device is available on this worker")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def assemble(spec: JobSpec, raw: RawDataset, *, kernel: Kernel = "auto") -> Run:
    """Seed every RNG from `spec.training.seed`, then split and normalise `raw`, build the network and its
    optimizers on the spec's device. The same spec and data give the same run, bit for bit."""
    training = spec.training
    device = resolve_device(training.device)
    torch.manual_seed(training.seed)
    np.random.seed(training.seed % 2**32)
    random.seed(training.seed)
    shuffle = torch.Generator().manual_seed(training.seed)
    data = prepare(raw, spec.model.problem(raw.info), training, device)
    network = build_network(spec, raw.info)
    model = network.module.to(device)
    procedure = network.architecture.procedure
    steps_per_epoch = math.ceil(data.size("train") / training.batch_size)
    built = build_optimizers(spec, procedure, model, steps_per_epoch, kernel)
    autocast, scaler = _mixed_precision(device, training.precision)
    if device.type == "cuda":  # process-wide switches: each job trains in a process of its own
        torch.backends.cuda.matmul.allow_tf32 = training.tf32
        torch.backends.cudnn.allow_tf32 = training.tf32
    step_ctx = StepContext(
        procedure.compiled(model) if training.compile else model,
        built.optimizers,
        raw.info.task,
        spec.model,
        autocast,
        scaler,
        built.grad_clip_norm,
    )
    return Run(
        spec=spec,
        device=device,
        procedure=procedure,
        data=data,
        model=model,
        optimizers=built.optimizers,
        schedulers=built.schedulers,
        scaler=scaler,
        autocast=autocast,
        step_ctx=step_ctx,
        shuffle=shuffle,
        steps_per_epoch=steps_per_epoch,
    )


def _mixed_precision(device: torch.device, precision: str) -> tuple[Autocast, torch.amp.GradScaler | None]:
    if precision == "fp32":
        return nullcontext, None
    if device.type != "cuda":
        log.warning("precision %s is CUDA-only autocast; training in fp32 on %s", precision, device)
        return nullcontext, None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16

    def autocast() -> AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=dtype)

    return autocast, torch.amp.GradScaler("cuda") if precision == "fp16" else None
