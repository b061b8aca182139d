"""ONNX export of a trained network for serving: the same raw-input module `load_model` returns (the
training normalisation inside), or for a GAN its generator (latent vectors in, samples out). Needs the
optional extra `nnforge[onnx]` (onnx + onnxscript: torch's exporter is built on them)."""

import warnings
from typing import Any

import torch

from models.checkpoint import NormalizedModel, load_model

INPUT, OUTPUT = "input", "output"


def example_input(model: NormalizedModel, checkpoint: dict[str, Any]) -> torch.Tensor:
    """A batch of two inputs of the exported graph: latent vectors for a GAN, raw samples otherwise."""
    if model.generative:
        return torch.randn(2, checkpoint["spec"]["model"]["latent_dim"])
    return torch.randn(2, *checkpoint["dataset_info"]["sample_shape"])


def export_onnx(checkpoint: dict[str, Any]) -> bytes:
    """The model as an ONNX file with input `input` and output `output`, batch size free."""
    model = load_model(checkpoint)
    with warnings.catch_warnings():  # the exporter's deprecation chatter is not the user's concern
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example_input(model, checkpoint),),
            dynamo=True,
            verbose=False,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}},
        )
    assert program is not None  # dynamo=True always returns the program
    return program.model_proto.SerializeToString()  # type: ignore[no-any-return]
