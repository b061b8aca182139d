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
