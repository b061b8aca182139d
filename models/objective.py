"""A job's one objective: the epoch metric that picks its best epoch (best checkpoint, "best" in lists, the
best checkpoint's test score), and the early-stopping target that follows it unless named apart."""

from dataclasses import dataclass
from typing import Literal

from models.dataset_info import Task
from models.errors import SpecError, SpecIssue
from models.specs import JobSpec, ObjectiveSpec

Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Target:
    metric: str
    mode: Mode


def default_objective(
    task: Task, *, generative: bool, has_validation: bool, has_quality: bool
) -> ObjectiveSpec | None:
    """Accuracy for a classifier (what users read first), the loss for regression, a GAN's sample quality
    where its dataset measures one; the validation split's value, the training one's without it. None for a
    GAN without a quality measure: it has no best epoch, and `best` is its latest checkpoint."""
    split = "val" if has_validation else "train"
    if generative:
        return (
            ObjectiveSpec(metric="val_high_quality_fraction", mode="max")
            if has_quality and has_validation
            else None
        )
    if task == "classification":
        return ObjectiveSpec(metric=f"{split}_accuracy", mode="max")
    return ObjectiveSpec(metric=f"{split}_loss", mode="min")


def early_stopping_target(spec: JobSpec, objective: ObjectiveSpec | None) -> Target | None:
    early = spec.training.early_stopping
    if early is None:
        return None
    if early.metric is not None:
        return Target(early.metric, early.mode)
    if objective is None:
        raise SpecError.single(
            "training.early_stopping.metric", None, "this job has no objective to follow: name a metric"
        )
    return Target(objective.metric, objective.mode)


def check_metric_names(spec: JobSpec, objective: ObjectiveSpec | None, available: set[str]) -> None:
    """Refuse an objective or early-stopping metric the run will never report, listing those it will."""
    issues = []
    named = {"training.objective.metric": spec.training.objective and spec.training.objective.metric}
    early = spec.training.early_stopping
    named["training.early_stopping.metric"] = early.metric if early is not None else None
    for field, metric in named.items():
        if metric is not None and metric not in available:
            issues.append(
                SpecIssue(
                    field, metric, f"this job reports no such epoch metric; it reports {sorted(available)}"
                )
            )
    if objective is not None and spec.training.objective is None and objective.metric not in available:
        issues.append(SpecIssue("training.objective", None, f"set one of {sorted(available)}"))
    if issues:
        raise SpecError(issues)
