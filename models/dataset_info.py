"""What a dataset looks like, known without loading it (torch- and numpy-free, so the API can use it)."""

from math import prod
from typing import Literal

from pydantic import BaseModel, ConfigDict

Task = Literal["classification", "regression", "unlabelled"]


class DatasetInfo(BaseModel):
    """Shapes are per sample: `sample_shape` of x, `target_shape` of y (`()` for a class label)."""

    model_config = ConfigDict(frozen=True)

    name: str
    task: Task
    num_samples: int
    sample_shape: tuple[int, ...]
    target_shape: tuple[int, ...] = ()
    num_classes: int | None = None
    classes: tuple[int | str, ...] | None = None  # the original label of each class index, when not 0..C-1
    feature_names: tuple[str, ...] | None = None  # a CSV's header, less the label column
    # What the dataset's quality measure reports of generated samples (models.datasets), for objectives.
    quality_metrics: tuple[str, ...] = ()
    description: str = ""

    @property
    def num_features(self) -> int:
        return prod(self.sample_shape)


BUILTIN_DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="digits",
            task="classification",
            num_samples=1797,
            sample_shape=(8, 8),
            num_classes=10,
            description="scikit-learn's bundled 8×8 handwritten digits, 10 classes; "
            "an RNN reads each image as 8 steps of 8 features",
        ),
        DatasetInfo(
            name="moons",
            task="classification",
            num_samples=2000,
            sample_shape=(2,),
            num_classes=2,
            description="two interleaving half circles in 2-D, noise 0.2",
        ),
        DatasetInfo(
            name="circles",
            task="classification",
            num_samples=2000,
            sample_shape=(2,),
            num_classes=2,
            description="a small circle inside a large one in 2-D, noise 0.1",
        ),
        DatasetInfo(
            name="gaussian-ring",
            task="unlabelled",
            num_samples=4000,
            sample_shape=(2,),
            description="2-D mixture of 8 Gaussians (σ 0.05) on a circle of radius 2, for GANs",
            quality_metrics=("modes_covered", "high_quality_fraction"),
        ),
        DatasetInfo(
            name="sine",
            task="regression",
            num_samples=1000,
            sample_shape=(50, 1),
            target_shape=(50, 1),
            description="noisy sine waves of random frequency, phase and amplitude, 50 steps; "
            "the target at step t is the value at step t+1",
        ),
    )
}
