"""A generative run's samples of one epoch, in raw data units, small enough to store with the job at every
epoch: points for vector data (the dashboard scatters them over real points), images for everything else
(an image grid)."""

import math
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

SampleKind = Literal["points", "images"]
COUNTS: dict[SampleKind, int] = {"points": 256, "images": 16}  # generated samples per epoch
REFERENCE_COUNTS: dict[SampleKind, int] = {"points": 512, "images": 16}  # real samples drawn beside them
SIGNIFICANT_DIGITS = 6  # float32 holds about 7; the stored JSON is about half the size of full reprs


@dataclass(frozen=True)
class SampleSet:
    kind: SampleKind
    shape: tuple[int, ...]  # one sample: the dataset's sample_shape
    samples: list[Any]  # (n, *shape) generated, raw units; a non-finite value is None (JSON has no NaN)
    reference: list[Any]  # (m, *shape) real training samples, same units, to draw the samples against


def sample_kind(shape: tuple[int, ...]) -> SampleKind:
    return "points" if len(shape) == 1 else "images"


def sample_set(generated: Tensor, real: Tensor, shape: tuple[int, ...]) -> SampleSet:
    """`generated` and `real` in raw units, in any view of `shape` (an MLP GAN sees digits as 64 features)."""
    return SampleSet(
        kind=sample_kind(shape),
        shape=shape,
        samples=_json_values(generated.detach().float().cpu().reshape(len(generated), *shape).tolist()),
        reference=_json_values(real.detach().float().cpu().reshape(len(real), *shape).tolist()),
    )


def _json_values(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_values(v) for v in value]
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else None
