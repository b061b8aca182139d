"""What every evaluation starts from: the checkpoint's network and the job's split of its data, as the
network sees them (normalised, in the architecture's input view), on the CPU."""

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.assemble import Network, build_network
from models.data import PreparedData, prepare
from models.dataset_info import DatasetInfo
from models.raw_dataset import RawDataset
from models.specs import JobSpec


@dataclass(frozen=True)
class Subject:
    spec: JobSpec
    info: DatasetInfo
    network: Network
    data: PreparedData  # every split, normalised with the training part's statistics
    split: str

    @property
    def module(self) -> nn.Module:
        return self.network.module

    @property
    def x(self) -> Tensor:  # (N, *input_shape), normalised
        return self.data.x[self.split]

    @property
    def y(self) -> Tensor | None:
        return self.data.y[self.split]

    def raw(self, x: Tensor) -> Tensor:
        """Normalised inputs back in data units, one sample per row in the dataset's sample shape."""
        return self.data.denormalize(x).reshape(len(x), *self.info.sample_shape)


def load_subject(checkpoint: dict[str, Any], raw: RawDataset, split: str) -> Subject:
    """The checkpoint's weights in eval mode over `split` of `raw`, cut and normalised exactly as its training
    was (the same seeded split and statistics: `prepare` with the job's own spec)."""
    spec = JobSpec.model_validate(checkpoint["spec"])
    info = DatasetInfo.model_validate(checkpoint["dataset_info"])
    network = build_network(spec, info)
    network.module.load_state_dict(checkpoint["model"])
    network.module.eval()
    data = prepare(raw, network.problem, spec.training, torch.device("cpu"))
    return Subject(spec=spec, info=info, network=network, data=data, split=split)


def rounded(values: Any, digits: int = 6) -> Any:
    """Nested lists of floats rounded to `digits` significant digits (the stored JSON stays small)."""
    if isinstance(values, list):
        return [rounded(v, digits) for v in values]
    return float(f"{values:.{digits}g}") if math.isfinite(values) else None  # JSON has no NaN
