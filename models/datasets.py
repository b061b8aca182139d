"""Built-in datasets, generated or shipped with scikit-learn (nothing downloads), and dataset resolution."""

import importlib.util
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.dataset_info import BUILTIN_DATASETS
from models.errors import SpecError
from models.raw_dataset import RawDataset
from models.specs import DatasetRef

DATA_SEED = 0  # built-ins are the same arrays for every job; the job's seed drives splits and training
RING_MODES, RING_RADIUS, RING_SIGMA = 8, 2.0, 0.05
SINE_STEPS = 50


def _digits() -> tuple[np.ndarray, np.ndarray]:
    # load_digits() reads this file too; reading it directly skips importing scikit-learn (and SciPy), about
    # 2.5 s of every training process's start-up on a 2-core machine. Same arrays, same order.
    spec = importlib.util.find_spec("sklearn")
    locations = spec.submodule_search_locations if spec is not None else None
    path = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    data = np.loadtxt(path, delimiter=",")  # (1797, 65): 64 pixels, then the label
    return data[:, :-1].reshape(-1, 8, 8).astype(np.float32), data[:, -1].astype(np.int64)


def _moons() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    x, y = make_moons(BUILTIN_DATASETS["moons"].num_samples, noise=0.2, random_state=DATA_SEED)
    return x.astype(np.float32), y.astype(np.int64)


def _circles() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_circles

    x, y = make_circles(
        BUILTIN_DATASETS["circles"].num_samples, noise=0.1, factor=0.5, random_state=DATA_SEED
    )
    return x.astype(np.float32), y.astype(np.int64)


def ring_modes() -> np.ndarray:
    angles = 2 * np.pi * np.arange(RING_MODES) / RING_MODES
    return RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (8, 2)


def _gaussian_ring() -> tuple[np.ndarray, None]:
    rng = np.random.default_rng(DATA_SEED)
    n = BUILTIN_DATASETS["gaussian-ring"].num_samples
    centres = ring_modes()[rng.integers(0, RING_MODES, n)]
    return (centres + RING_SIGMA * rng.standard_normal((n, 2))).astype(np.float32), None


def ring_quality(samples: np.ndarray) -> dict[str, float]:
    """Modes covered (of 8) and the share of samples within 3σ of a mode.

    A mode counts as covered when at least 1% of the samples lie within 3σ of it (after VEEGAN's protocol).
    """
    distances = np.linalg.norm(samples[:, None, :] - ring_modes()[None], axis=2)  # (n, 8)
    nearest = distances.argmin(axis=1)
    close = distances.min(axis=1) <= 3 * RING_SIGMA
    per_mode = np.bincount(nearest[close], minlength=RING_MODES)
    covered = int((per_mode >= max(1, 0.01 * len(samples))).sum())
    return {"modes_covered": float(covered), "high_quality_fraction": float(close.mean())}


def _sine() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(DATA_SEED)
    n = BUILTIN_DATASETS["sine"].num_samples
    periods = rng.uniform(10, 30, (n, 1))
    phases = rng.uniform(0, 2 * np.pi, (n, 1))
    amplitudes = rng.uniform(0.5, 1.5, (n, 1))
    t = np.arange(SINE_STEPS + 1)[None, :]
    series = amplitudes * np.sin(2 * np.pi * t / periods + phases) + 0.02 * rng.standard_normal(
        (n, SINE_STEPS + 1)
    )
    series = series[..., None].astype(np.float32)  # (n, T+1, 1)
    return series[:, :-1], series[:, 1:]


_GENERATORS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray | None]]] = {
    "digits": _digits,
    "moons": _moons,
    "circles": _circles,
    "gaussian-ring": _gaussian_ring,
    "sine": _sine,
}
_QUALITY = {"gaussian-ring": ring_quality}


@lru_cache(maxsize=len(_GENERATORS))
def builtin_dataset(name: str) -> RawDataset:
    x, y = _GENERATORS[name]()
    x.flags.writeable = False
    if y is not None:
        y.flags.writeable = False
    return RawDataset(info=BUILTIN_DATASETS[name], x=x, y=y, quality=_QUALITY.get(name))


UploadedResolver = Callable[[str], RawDataset]


def load_raw(ref: DatasetRef, *, resolve_uploaded: UploadedResolver | None = None) -> RawDataset:
    """The arrays a dataset reference names: a built-in, a local file, or an upload the caller resolves."""
    if ref.name is not None:
        return builtin_dataset(ref.name)
    if ref.path is not None:
        from models.uploads import read_dataset_file

        return read_dataset_file(
            ref.path, name=Path(ref.path).name, label_column=ref.label_column, unlabelled=ref.unlabelled
        )
    if resolve_uploaded is None:
        raise SpecError.single(
            "dataset.id", ref.id, "uploaded datasets are only available through the service"
        )
    assert ref.id is not None
    return resolve_uploaded(ref.id)
