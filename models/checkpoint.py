"""Checkpoints: plain dicts of tensors and primitives (they load with `torch.load(weights_only=True)`)
holding everything a run needs to continue bit for bit, and everything a user needs to use the network."""

import io
import json
import os
import random
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor, nn

from models.assemble import build_network
from models.dataset_info import DatasetInfo
from models.specs import JobSpec

FORMAT = "nnforge.checkpoint"
FORMAT_VERSION = 1


@dataclass
class Progress:
    """Where a run stands; `batch_in_epoch > 0` means a checkpoint taken mid-epoch (cancel, shutdown)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)  # running sums of the epoch's step metrics
    epoch_samples: int = 0
    best_value: float | None = None  # of the objective
    best_epoch: int | None = None
    best_test_metrics: dict[str, float] = field(default_factory=dict)  # test_* of the best epoch's weights
    stop_best_value: float | None = None  # of the early-stopping metric
    bad_epochs: int = 0  # epochs since the early-stopping metric last improved
    first_losses: dict[str, float] = field(default_factory=dict)  # each training loss at the first step
    nonfinite_steps: int = 0  # consecutive steps whose training loss diverged (not finite, or exploded)


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    _, np_key, np_pos, np_has_gauss, np_gaussian = np.random.get_state(legacy=True)  # type: ignore[misc]
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle": shuffle.get_state(),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_key, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gaussian),
        },
        "python": {
            "version": py_version,
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }


def restore_rng(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    shuffle.set_state(state["shuffle"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["key"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))


def make_checkpoint(
    *,
    spec: JobSpec,
    info: DatasetInfo,
    model: nn.Module,
    optimizers: dict[str, Any],
    schedulers: dict[str, Any],
    scaler: Any,
    progress: Progress,
    rng: dict[str, Any],
    mean: Tensor,
    std: Tensor,
    metrics: dict[str, float],
    weights: dict[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Everything to resume the run; with `weights` (a best epoch's, kept aside), those weights alone —
    `resumable` False, no optimizer state — for downloading and rebuilding the network."""
    resumable = weights is None
    state = model.state_dict() if weights is None else weights
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "resumable": resumable,
        "spec": spec.model_dump(mode="json"),
        "dataset_info": info.model_dump(mode="json"),
        "model": {k: v.detach().cpu().clone() for k, v in state.items()},
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()} if resumable else {},
        "schedulers": {name: sched.state_dict() for name, sched in schedulers.items()} if resumable else {},
        "scaler": scaler.state_dict() if scaler is not None and resumable else {},
        "progress": asdict(progress),
        "rng": rng,
        "normalization": {"mean": mean.detach().cpu().clone(), "std": std.detach().cpu().clone()},
        "metrics": dict(metrics),
    }


def save_checkpoint(checkpoint: dict[str, Any], destination: str | os.PathLike[str] | BinaryIO) -> None:
    torch.save(checkpoint, destination)


def checkpoint_bytes(checkpoint: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def read_checkpoint(source: str | os.PathLike[str] | BinaryIO | bytes) -> dict[str, Any]:
    """Load a checkpoint without running any pickled code (`weights_only=True`)."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError("not an nnforge checkpoint")
    return checkpoint


class NormalizedModel(nn.Module):
    """A trained network that takes raw inputs: reshapes them to its view and applies the training
    normalisation itself. For a GAN it maps latent vectors to samples in raw units."""

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        network: nn.Module,
        mean: Tensor,
        std: Tensor,
        input_shape: tuple[int, ...],
        generative: bool,
        spec: dict[str, Any],
        info: dict[str, Any],
    ) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.input_shape = input_shape
        self.generative = generative
        self.spec = spec
        self.dataset_info = info

    def forward(self, x: Tensor) -> Tensor:
        if self.generative:
            return self.network(x) * self.std + self.mean  # (B, latent) -> (B, *input_shape)
        return self.network((x.reshape(len(x), *self.input_shape) - self.mean) / self.std)


def load_model(source: str | os.PathLike[str] | BinaryIO | bytes | dict[str, Any]) -> NormalizedModel:
    """Rebuild the trained network from a checkpoint file alone, in eval mode, taking raw inputs."""
    checkpoint = source if isinstance(source, dict) else read_checkpoint(source)
    network = build_network(
        JobSpec.model_validate(checkpoint["spec"]), DatasetInfo.model_validate(checkpoint["dataset_info"])
    )
    network.module.load_state_dict(checkpoint["model"])
    norm = checkpoint["normalization"]
    model = NormalizedModel(
        network.module,
        norm["mean"],
        norm["std"],
        network.problem.input_shape,
        generative=network.architecture.generative,
        spec=checkpoint["spec"],
        info=checkpoint["dataset_info"],
    )
    return model.eval()


def export_safetensors(checkpoint: dict[str, Any]) -> bytes:
    """The weights alone (plus the normalisation), with the spec and dataset info as JSON metadata."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.contiguous() for k, v in checkpoint["model"].items()}
    tensors |= {f"normalization.{k}": v.contiguous() for k, v in checkpoint["normalization"].items()}
    metadata = {
        "format": "nnforge.safetensors",
        "spec": json.dumps(checkpoint["spec"]),
        "dataset_info": json.dumps(checkpoint["dataset_info"]),
        "metrics": json.dumps(checkpoint["metrics"]),
    }
    return save(tensors, metadata=metadata)


def safetensors_from_bytes(data: bytes) -> bytes:
    """A stored checkpoint's bytes as safetensors: what the API runs in a child, never importing torch."""
    return export_safetensors(read_checkpoint(data))
