"""The baseline the benchmarks hold `fit()` against: a plain PyTorch loop, never fit() itself.

It trains a run assembled exactly as fit() assembles one (`models.assemble`: the same seeds, split,
normalisation, network and optimizers, on the spec's device), one epoch per call: a randperm of the training
part, then per batch an index, the architecture's step and the schedulers. The step is the architecture's
own, `procedure.train_step` from the registry (zero_grad, forward, loss, backward, [clip,] step; for a GAN the
DCGAN order, D on real and detached fakes, then G), shared rather than re-implemented: the loop never branches
on the architecture and both sides do the same arithmetic. What the baseline leaves out is what fit() adds
around the step: per-step metrics, their flushes, hooks, the stop check, evaluation and checkpoints.

Same spec, same data: after the same epochs the baseline's network equals fit()'s, bit for bit (on the CPU).
"""

from collections.abc import Callable

import torch
from torch import Tensor

from models.assemble import Run, assemble
from models.datasets import load_raw
from models.optim import Kernel
from models.raw_dataset import RawDataset
from models.specs import JobSpec


def plain_run(spec: JobSpec, raw: RawDataset | None = None, kernel: Kernel = "auto") -> Run:
    """A run of its own (network, optimizers, batch-order RNG) for the plain loop; `raw` overrides the spec's
    dataset (a benchmark's tiled copy, say)."""
    return assemble(spec, raw if raw is not None else load_raw(spec.dataset), kernel=kernel)


def plain_epochs(run: Run) -> Callable[[], None]:
    """One epoch of the plain loop over `run`'s training part per call."""
    x, y = run.data.x["train"], run.data.y["train"]
    batch_size = run.spec.training.batch_size
    run.model.train()

    def epoch() -> None:
        # The batch order from the run's own generator, as fit() draws it.
        order = torch.randperm(len(x), generator=run.shuffle).to(x.device)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            step(run, x[index], None if y is None else y[index])

    return epoch


def step(run: Run, x: Tensor, y: Tensor | None) -> None:
    """One training step on a batch: the architecture's procedure, then the learning-rate schedulers."""
    run.procedure.train_step(run.step_ctx, x, y)
    for scheduler in run.schedulers.values():
        scheduler.step()
