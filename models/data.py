"""From raw arrays to training tensors: seeded split, the architecture's input view, normalisation
fitted on the training part only. Everything lives on the device as whole tensors (the fast path)."""

from dataclasses import dataclass

import torch
from torch import Tensor

from models.dataset_info import DatasetInfo
from models.raw_dataset import QualityMeasure, RawDataset
from models.specs import Problem, TrainingSpec
from models.splits import split_indices

SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    info: DatasetInfo
    problem: Problem
    x: dict[str, Tensor]  # split -> (N, *input_shape), normalised
    y: dict[str, Tensor | None]
    mean: Tensor  # broadcastable to (N, *input_shape)
    std: Tensor
    quality: QualityMeasure | None

    def size(self, split: str) -> int:
        return len(self.x[split])

    def denormalize(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


def normalization_axes(input_rank: int) -> tuple[int, ...]:
    """Statistics per feature (N, F), per feature over time (N, T, F), per channel (N, C, H, W)."""
    return {1: (0,), 2: (0, 1), 3: (0, 2, 3)}[input_rank]


def fit_normalization(train_x: Tensor) -> tuple[Tensor, Tensor]:
    axes = normalization_axes(train_x.dim() - 1)
    mean = train_x.mean(dim=axes, keepdim=True)[0]
    std = train_x.std(dim=axes, keepdim=True, unbiased=False)[0]
    # Constant features (digits' blank border pixels) would divide by zero; leave their scale alone.
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean, std


def prepare(raw: RawDataset, problem: Problem, training: TrainingSpec, device: torch.device) -> PreparedData:
    parts = split_indices(
        raw.info.num_samples, training.validation_fraction, training.test_fraction, training.seed
    )
    x_all = torch.tensor(raw.x, dtype=torch.float32).reshape(-1, *problem.input_shape)
    y_all = None if raw.y is None else torch.tensor(raw.y)
    mean, std = fit_normalization(x_all[torch.from_numpy(parts["train"])])
    xs: dict[str, Tensor] = {}
    ys: dict[str, Tensor | None] = {}
    for split in SPLITS:
        index = torch.from_numpy(parts[split])
        xs[split] = ((x_all[index] - mean) / std).to(device)
        ys[split] = None if y_all is None else y_all[index].to(device)
    return PreparedData(
        info=raw.info,
        problem=problem,
        x=xs,
        y=ys,
        mean=mean.to(device),
        std=std.to(device),
        quality=raw.quality,
    )
