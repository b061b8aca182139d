"""What an evaluation may be asked for, bounded (the README's limits table lists them). Pydantic only, so the
API validates a request without torch; the worker reads the stored params back through the same classes."""

from typing import Annotated, Any, Final, Literal

from pydantic import Field, ValidationError

from models.errors import SpecError, SpecIssue
from models.specs import Spec, issue_reason

EvaluationKind = Literal["report", "robustness", "attribution"]
Split = Literal["train", "val", "test"]
Attack = Literal["fgsm", "pgd"]
ATTACKS: tuple[Attack, ...] = ("fgsm", "pgd")

MAX_REPORT_SEEDS: Final = 20  # a GAN's report: latent seeds its quality figures are measured at
MAX_ROBUSTNESS_SAMPLES: Final = 2_048  # samples of the split attacked at each ε
MAX_EPSILONS: Final = 16
MAX_EPSILON: Final = 10.0  # in units of the normalised input (standard deviations of the training data)
MAX_PGD_STEPS: Final = 200
MAX_ATTRIBUTION_SAMPLES: Final = 64
MAX_IG_STEPS: Final = 512
MAX_REPORT_SAMPLES: Final = 100_000  # the report reads at most this many samples of the split

Epsilon = Annotated[float, Field(ge=0.0, le=MAX_EPSILON)]


class ReportParams(Spec):
    seeds: Annotated[int, Field(ge=1, le=MAX_REPORT_SEEDS)] = 5  # GANs only: the spread over latent seeds


class RobustnessParams(Spec):
    attacks: list[Attack] = Field(default_factory=lambda: list(ATTACKS), min_length=1, max_length=2)
    # In units of the normalised input; the result also gives each ε in raw units per feature (ε × std).
    epsilons: list[Epsilon] = Field(
        default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 1.0], min_length=1, max_length=MAX_EPSILONS
    )
    steps: Annotated[int, Field(ge=1, le=MAX_PGD_STEPS)] = 10  # PGD's
    # PGD's step as a fraction of ε (2.5/steps by Madry et al.'s rule when unset), so one value fits every ε.
    step_size: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    random_start: bool = True  # PGD starts at a uniform point of the ε-ball
    samples: Annotated[int, Field(ge=1, le=MAX_ROBUSTNESS_SAMPLES)] = 256  # the first N of the split
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0  # PGD's random start


class AttributionParams(Spec):
    samples: Annotated[int, Field(ge=1, le=MAX_ATTRIBUTION_SAMPLES)] = 16  # the first N of the split
    ig_steps: Annotated[int, Field(ge=2, le=MAX_IG_STEPS)] = 128  # integrated gradients' path steps


Params = ReportParams | RobustnessParams | AttributionParams
PARAMS: dict[str, type[Params]] = {
    "report": ReportParams,
    "robustness": RobustnessParams,
    "attribution": AttributionParams,
}


def applicable(kind: str, *, task: str, generative: bool) -> str | None:
    """Why `kind` cannot evaluate such a network (None when it can): attacks need class labels, attributions
    an output to attribute."""
    if kind == "robustness" and (generative or task != "classification"):
        return "robustness measures adversarial accuracy: it needs a classifier"
    if kind == "attribution" and (generative or task == "unlabelled"):
        return "attribution needs a network that maps inputs to outputs (a classifier or a regressor)"
    return None


class EvaluationCreate(Spec):
    """POST /v1/jobs/{id}/evaluations; `params` are the kind's (ReportParams, RobustnessParams,
    AttributionParams), checked by `parse_params` so that an error names `params.<field>`."""

    kind: EvaluationKind
    # "best" (the best epoch's weights; the newest without one), "latest", or a checkpoint id
    checkpoint: Annotated[str, Field(pattern=r"^(best|latest|[1-9][0-9]{0,9})$")] = "best"
    split: Split = "test"
    params: dict[str, Any] = Field(default_factory=dict)


def parse_params(kind: str, params: dict[str, Any]) -> Params:
    try:
        return PARAMS[kind].model_validate(params)
    except ValidationError as error:
        raise SpecError(
            [
                SpecIssue(".".join(["params", *map(str, e["loc"])]), e.get("input"), issue_reason(e))
                for e in error.errors(include_url=False)
            ]
        ) from None
