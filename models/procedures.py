"""Training procedures: how one step updates a network and how a split is evaluated.

`SUPERVISED` serves every network that maps inputs to targets; the GAN module defines the adversarial one.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from models.dataset_info import Task
from models.raw_dataset import QualityMeasure

EVAL_BATCH_SIZE = 1024
# A classification step keeps its logits for the group's one argmax when they are at most this many values
# (256 KiB in float32); larger outputs are reduced to labels in the step, bounding what a group holds.
DEFERRED_LOGITS = 65_536


@dataclass
class StepContext:
    """Everything a training step needs besides the batch."""

    model: nn.Module
    optimizers: dict[str, Optimizer]
    task: Task
    spec: Any  # the architecture's model spec
    autocast: Callable[[], AbstractContextManager[Any]]
    scaler: torch.amp.GradScaler | None = None
    grad_clip_norm: dict[str, float | None] = field(default_factory=dict)

    def update(self, loss: Tensor, group: str) -> None:
        """Backpropagate `loss` and step the optimizer of `group` (with clipping and loss scaling)."""
        optimizer = self.optimizers[group]
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
        clip = self.grad_clip_norm.get(group)
        if clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            params = [p for group_ in optimizer.param_groups for p in group_["params"]]
            nn.utils.clip_grad_norm_(params, clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()


@dataclass
class EvalContext:
    model: nn.Module
    task: Task
    spec: Any
    autocast: Callable[[], AbstractContextManager[Any]]
    denormalize: Callable[[Tensor], Tensor]  # normalised input view -> raw units
    quality: QualityMeasure | None
    generator: torch.Generator  # evaluation's own RNG, so evaluating never shifts the training RNG


ParameterGroups = dict[str, tuple[list[nn.Parameter], Any]]  # group -> (parameters, optimizer spec or None)
# Detached tensors of one training step (scalars or per-sample values). The loop reduces them to metrics once
# per group of steps (`step_metrics`), so a step adds no reductions of its own to the training's ATen calls.
StepOutputs = dict[str, Tensor]


class Procedure(Protocol):
    def parameter_groups(self, model: nn.Module, spec: Any) -> ParameterGroups:
        """Parameters per optimizer; a group's spec overrides the job's optimizer spec when not None."""
        ...

    def train_step(self, ctx: StepContext, x: Tensor, y: Tensor | None) -> StepOutputs:
        """One update on a batch; returns detached outputs for `step_metrics`, never synchronising."""
        ...

    def step_metrics(self, outputs: StepOutputs) -> dict[str, Tensor]:
        """Each step's metrics (batch means) from the outputs of S steps stacked on a new leading axis:
        every value has shape (S,)."""
        ...

    def compiled(self, model: nn.Module) -> nn.Module:
        """What `train_step` calls as the network, compiled by torch.compile; it shares `model`'s
        parameters, so optimizers and checkpoints keep working on `model`."""
        ...

    def evaluate(self, ctx: EvalContext, x: Tensor, y: Tensor | None) -> dict[str, float]: ...

    def generate(self, ctx: EvalContext, n: int) -> Tensor | None:
        """`n` samples in the normalised input view drawn with `ctx.generator`, or None when the network
        generates nothing (every supervised one). The loop shows them once per epoch."""
        ...


def step_metrics(procedure: Procedure, outputs: Sequence[StepOutputs]) -> dict[str, Tensor]:
    """The metrics of steps whose outputs have equal shapes (one batch size): one stack per key."""
    stacked = {key: torch.stack([step[key] for step in outputs]) for key in outputs[0]}
    return procedure.step_metrics(stacked)


def metric_values(values: Tensor) -> Tensor:
    """`values` in at least float32 (half-precision outputs of autocast upcast, float64 kept)."""
    return values.to(torch.promote_types(values.dtype, torch.float32))


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class Supervised:
    def parameter_groups(self, model: nn.Module, spec: Any) -> ParameterGroups:
        return {"model": (list(model.parameters()), None)}

    def train_step(self, ctx: StepContext, x: Tensor, y: Tensor | None) -> StepOutputs:
        assert y is not None
        with ctx.autocast():
            output = ctx.model(x)
            loss = _loss(output, y, ctx.task)
        ctx.update(loss, "model")
        if ctx.task != "classification":
            return {"loss": loss.detach()}
        if output.numel() <= DEFERRED_LOGITS:
            return {"loss": loss.detach(), "logits": output.detach(), "target": y}
        return {"loss": loss.detach(), "predicted": output.detach().argmax(1), "target": y}

    def compiled(self, model: nn.Module) -> nn.Module:
        return torch.compile(model)  # type: ignore[return-value]

    def step_metrics(self, outputs: StepOutputs) -> dict[str, Tensor]:
        metrics = {"loss": metric_values(outputs["loss"])}
        if "target" in outputs:  # stacked: (steps, batch, classes, ...) logits or (steps, batch, ...) labels
            predicted = outputs["predicted"] if "predicted" in outputs else outputs["logits"].argmax(2)
            metrics["accuracy"] = (predicted == outputs["target"]).flatten(1).float().mean(1)
        return metrics

    @torch.no_grad()
    def evaluate(self, ctx: EvalContext, x: Tensor, y: Tensor | None) -> dict[str, float]:
        assert y is not None
        total_loss = torch.zeros((), device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        for part in batches(len(x), EVAL_BATCH_SIZE):
            with ctx.autocast():
                output = ctx.model(x[part])
                total_loss += _loss(output.float(), y[part], ctx.task) * len(output)
            if ctx.task == "classification":
                correct += (output.argmax(1) == y[part]).sum()
        loss = total_loss.item() / len(x)
        if ctx.task == "classification":
            return {"loss": loss, "accuracy": correct.item() / len(x)}
        return {"loss": loss, "mse": loss}

    def generate(self, ctx: EvalContext, n: int) -> Tensor | None:
        return None


def _loss(output: Tensor, y: Tensor, task: Task) -> Tensor:
    if task == "classification":
        return F.cross_entropy(output, y)
    return F.mse_loss(output, y.reshape(output.shape))


SUPERVISED = Supervised()
