"""The dry check: build the network and run one training step and one evaluation on two synthetic
samples, on the CPU, so a spec that validates but cannot run on its dataset is refused before it queues."""

from contextlib import nullcontext

import torch

from models.assemble import build_network, build_optimizers
from models.dataset_info import DatasetInfo
from models.errors import SpecError
from models.procedures import EvalContext, StepContext, step_metrics
from models.specs import JobSpec, check_against_dataset

SAMPLES = 2


def dry_check(spec: JobSpec, info: DatasetInfo) -> int:
    """Raise SpecError if `spec` cannot train on a dataset shaped like `info`; returns the parameter count."""
    count = check_against_dataset(spec, info)
    problem = spec.model.problem(info)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(SAMPLES, *problem.input_shape)
        if info.task == "classification":
            y: torch.Tensor | None = torch.arange(SAMPLES) % (info.num_classes or 1)
        elif info.task == "regression":
            y = torch.randn(SAMPLES, *info.target_shape)
        else:
            y = None
        try:
            network = build_network(spec, info)
            model, procedure = network.module, network.architecture.procedure
            built = build_optimizers(spec, procedure, model, steps_per_epoch=1)
            ctx = StepContext(
                model, built.optimizers, info.task, spec.model, nullcontext, None, built.grad_clip_norm
            )
            metrics = step_metrics(procedure, [procedure.train_step(ctx, x, y)])
            model.eval()
            procedure.evaluate(
                EvalContext(
                    model,
                    info.task,
                    spec.model,
                    nullcontext,
                    lambda t: t,
                    None,
                    torch.Generator().manual_seed(0),
                ),
                x,
                y,
            )
        except Exception as error:  # any failure here is the spec's, reported to the user as such
            raise SpecError.single(
                "model", spec.model.arch, f"the network fails on dataset '{info.name}': {error}"
            ) from error
    bad = [name for name, value in metrics.items() if not torch.isfinite(value).all()]
    if bad:
        raise SpecError.single(
            "optimizer", spec.optimizer.name, f"the first training step gives non-finite {', '.join(bad)}"
        )
    return count
