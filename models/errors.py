"""The error users see for a spec or dataset they can fix: each issue names the field, value and reason."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpecIssue:
    field: str  # dotted path into the job spec, e.g. "training.batch_size"
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} (got {self.value!r})"


class SpecError(ValueError):
    """A job spec (or the dataset it names) that cannot run; `issues` lists every problem found."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))

    @classmethod
    def single(cls, field: str, value: Any, reason: str) -> "SpecError":
        return cls([SpecIssue(field, value, reason)])


class Diverged(RuntimeError):
    """Training went non-finite (or exploded) and stayed so: an outcome of the run, such as a too-high
    learning rate, not a bug."""

    def __init__(self, *, metric: str, value: float, step: int, epoch: int, steps: int) -> None:
        self.metric, self.value, self.step, self.epoch = metric, value, step, epoch
        super().__init__(
            f"diverged: the training {metric} was {value:.4g} for {steps} steps in a row, up to step {step} "
            f"(epoch {epoch}); the last finite checkpoint is kept — try a lower learning rate or gradient "
            "clipping"
        )
