"""Run one evaluation: a kind, its params, a checkpoint and the dataset it was trained on."""

from collections.abc import Callable
from typing import Any

from models.errors import SpecError
from models.evaluate.params import Params, applicable, parse_params
from models.evaluate.subject import Subject, load_subject
from models.raw_dataset import RawDataset


def evaluate(
    kind: str, params: dict[str, Any], checkpoint: dict[str, Any], raw: RawDataset, split: str
) -> dict[str, Any]:
    """The evaluation's result (JSON-ready). SpecError when the split is empty or the kind does not apply."""
    parsed = parse_params(kind, params)
    subject = load_subject(checkpoint, raw, split)
    reason = applicable(kind, task=subject.info.task, generative=subject.network.architecture.generative)
    if reason is not None:
        raise SpecError.single("kind", kind, reason)
    if len(subject.x) == 0:
        raise SpecError.single("split", split, "this job's split holds no samples")
    return _RUNNERS[kind](subject, parsed)


def _report(subject: Subject, params: Params) -> dict[str, Any]:
    from models.evaluate.report import report

    return report(subject, params)  # type: ignore[arg-type]


def _robustness(subject: Subject, params: Params) -> dict[str, Any]:
    from models.evaluate.attacks import robustness

    return robustness(subject, params)  # type: ignore[arg-type]


def _attribution(subject: Subject, params: Params) -> dict[str, Any]:
    from models.evaluate.attribution import attribution  # Captum loads only for attributions

    return attribution(subject, params)  # type: ignore[arg-type]


_RUNNERS: dict[str, Callable[[Subject, Params], dict[str, Any]]] = {
    "report": _report,
    "robustness": _robustness,
    "attribution": _attribution,
}
