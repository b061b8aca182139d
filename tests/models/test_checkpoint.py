"""Checkpoints load safely, rebuild a usable network from the file alone, and export to safetensors."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

from models.checkpoint import (
    checkpoint_bytes,
    export_safetensors,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from models.datasets import builtin_dataset
from models.specs import JobSpec, parse_job_spec
from models.splits import split_indices
from models.train import fit


@pytest.fixture(scope="module")
def mlp_run():
    spec = parse_job_spec(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden_sizes": [32]},
            "training": {"epochs": 3, "seed": 1},
        }
    )
    return spec, fit(spec)


def test_checkpoint_file_loads_with_weights_only(mlp_run, tmp_path: Path) -> None:
    _, result = mlp_run
    path = tmp_path / "model.pt"
    save_checkpoint(result.checkpoint, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["progress"]["epoch"] == 3
    assert torch.equal(loaded["model"]["layers.0.weight"], result.model.state_dict()["layers.0.weight"])


def test_load_model_on_raw_inputs_reproduces_reported_test_accuracy(mlp_run, tmp_path: Path) -> None:
    spec, result = mlp_run
    path = tmp_path / "model.pt"
    save_checkpoint(result.checkpoint, path)
    model = load_model(path)

    raw = builtin_dataset("digits")
    test = split_indices(
        len(raw.x), spec.training.validation_fraction, spec.training.test_fraction, spec.training.seed
    )["test"]
    with torch.no_grad():
        predicted = model(torch.tensor(raw.x[test])).argmax(1).numpy()  # raw 8×8 images, unnormalised
    accuracy = float(np.mean(predicted == raw.y[test]))
    assert accuracy == result.metrics["test_accuracy"]
    assert not model.training


def test_load_model_of_a_gan_generates_in_raw_units() -> None:
    spec = parse_job_spec(
        {"dataset": {"name": "gaussian-ring"}, "model": {"arch": "gan"}, "training": {"epochs": 1}}
    )
    result = fit(spec)
    model = load_model(checkpoint_bytes(result.checkpoint))
    z = torch.randn(5, spec.model.latent_dim)
    with torch.no_grad():
        raw_samples = model(z)
        normalised = result.model.eval()(z)
    norm = result.checkpoint["normalization"]
    assert torch.allclose(raw_samples, normalised * norm["std"] + norm["mean"])


def test_read_checkpoint_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"format": "nnforge.checkpoint", "x": Exploit()}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        read_checkpoint(path)
    assert not marker.exists()


def test_read_checkpoint_refuses_a_foreign_file() -> None:
    with pytest.raises(ValueError, match="not an nnforge checkpoint"):
        read_checkpoint(checkpoint_bytes({"model": {}}))


def test_export_safetensors_holds_weights_and_spec(mlp_run) -> None:
    spec, result = mlp_run
    data = export_safetensors(result.checkpoint)
    tensors = load_safetensors(data)
    for key, value in result.checkpoint["model"].items():
        assert torch.equal(tensors[f"model.{key}"], value)
    assert torch.equal(tensors["normalization.mean"], result.checkpoint["normalization"]["mean"])
    header_length = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + header_length])["__metadata__"]
    assert JobSpec.model_validate(json.loads(metadata["spec"])) == spec
