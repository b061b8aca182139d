"""The seeded train/validation/test split (numpy only, so the API can size a job without torch)."""

import numpy as np


def split_sizes(n: int, validation_fraction: float, test_fraction: float) -> dict[str, int]:
    """How many samples each part gets (training keeps at least one)."""
    n_test = min(round(n * test_fraction), n - 1)
    n_val = min(round(n * validation_fraction), n - 1 - n_test)
    return {"test": n_test, "val": n_val, "train": n - n_test - n_val}


def split_indices(
    n: int, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """A seeded permutation cut into test, validation and training parts."""
    order = np.random.default_rng(seed).permutation(n)
    sizes = split_sizes(n, validation_fraction, test_fraction)
    n_test, n_val = sizes["test"], sizes["val"]
    return {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
