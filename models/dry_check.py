"""The dry check: build the network and run one training step and one evaluation on two synthetic
samples, on the CPU, so a spec that validates but cannot run on its dataset is refused before it queues. What
the step and the evaluation report are the epoch metrics the run will have: its objective must be one."""

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from models.assemble import build_network, build_optimizers
from models.dataset_info import DatasetInfo
from models.errors import SpecError
from models.objective import check_metric_names, default_objective
from models.procedures import EvalContext, StepContext, step_metrics
from models.raw_dataset import QualityMeasure
from models.specs import JobSpec, ObjectiveSpec, check_against_dataset
from models.splits import split_sizes

SAMPLES = 2


@dataclass(frozen=True)
class DryRun:
    parameters: int
    objective: ObjectiveSpec | None  # the spec's, or the default for this network and dataset
    epoch_metrics: frozenset[str]  # train_… and val_… names the run reports each epoch


def dry_check(spec: JobSpec, info: DatasetInfo) -> DryRun:
    """Raise SpecError if `spec` cannot train on a dataset shaped like `info`, or names an objective or
    early-stopping metric the run will never report."""
    count = check_against_dataset(spec, info)
    sizes = split_sizes(info.num_samples, spec.training.validation_fraction, spec.training.test_fraction)
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
            evaluated = procedure.evaluate(
                EvalContext(
                    model,
                    info.task,
                    spec.model,
                    nullcontext,
                    lambda t: t,
                    _quality_names(info),
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
    reported = {f"train_{name}" for name in metrics}
    if sizes["val"]:
        reported |= {f"val_{name}" for name in evaluated}
    objective = spec.training.objective or default_objective(
        info.task,
        generative=network.architecture.generative,
        has_validation=sizes["val"] > 0,
        has_quality=bool(info.quality_metrics),
    )
    check_metric_names(spec, objective, reported)
    return DryRun(count, objective, frozenset(reported))


def _quality_names(info: DatasetInfo) -> QualityMeasure | None:
    """A stand-in for the dataset's quality measure that reports its names, so they count as reported."""
    if not info.quality_metrics:
        return None
    return lambda samples: dict.fromkeys(info.quality_metrics, math.nan)
