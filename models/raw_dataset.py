"""A dataset as arrays in memory, before any split, view or normalisation (numpy only, no torch)."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.dataset_info import DatasetInfo

QualityMeasure = Callable[[np.ndarray], dict[str, float]]


@dataclass(frozen=True)
class RawDataset:
    """`x` is float32 of shape (N, *info.sample_shape); `y` is int64 class indices (classification),
    float32 of shape (N, *info.target_shape) (regression) or None (unlabelled)."""

    info: DatasetInfo
    x: np.ndarray
    y: np.ndarray | None
    # Scores generated samples (raw units) for datasets with a known ground truth, e.g. modes covered.
    quality: QualityMeasure | None = None
