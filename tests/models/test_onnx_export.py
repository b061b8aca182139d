"""ONNX export: each architecture's exported file runs in onnxruntime, with a free batch size, and gives
PyTorch's outputs (for a GAN, the generator's samples)."""

import numpy as np
import pytest
import torch

from models.checkpoint import load_model
from models.specs import parse_job_spec
from models.train import fit

ort = pytest.importorskip("onnxruntime", reason="the optional extra nnforge[onnx]")
pytest.importorskip("onnxscript", reason="the optional extra nnforge[onnx]")

from models.onnx_export import INPUT, export_onnx  # noqa: E402


@pytest.mark.parametrize(
    "spec",
    [
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "cnn", "conv_blocks": [{"channels": 4}], "batch_norm": True},
        },
        {"dataset": {"name": "sine"}, "model": {"arch": "rnn", "cell": "lstm", "hidden_size": 8}},
        {"dataset": {"name": "gaussian-ring"}, "model": {"arch": "gan", "latent_dim": 4}},
    ],
    ids=["cnn", "lstm", "gan-generator"],
)
def test_onnx_file_runs_in_onnxruntime_and_matches_pytorch(spec: dict) -> None:
    checkpoint = fit(parse_job_spec({**spec, "training": {"epochs": 1}})).checkpoint
    model = load_model(checkpoint)
    session = ort.InferenceSession(export_onnx(checkpoint))
    if model.generative:
        inputs = torch.randn(7, spec["model"]["latent_dim"])
    else:
        inputs = torch.randn(7, *checkpoint["dataset_info"]["sample_shape"]) * 3 + 1  # raw units
    with torch.no_grad():
        expected = model(inputs).numpy()
    (actual,) = session.run(None, {INPUT: inputs.numpy()})
    assert actual.shape == expected.shape  # 7 is not the batch size of the export: the axis is free
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
