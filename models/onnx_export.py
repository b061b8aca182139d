"""ONNX export of a trained network for serving: the same raw-input module `load_model` returns (the
training normalisation inside), or for a GAN its generator (latent vectors in, samples out). Needs the
optional extra `nnforge[onnx]` (onnx + onnxscript: torch's exporter is built on them).

The API serves predictions with ONNX Runtime and never imports torch: it runs `export_checkpoint` in a
bounded child process (app/api/onnx_models.py)."""

import warnings
from typing import Any

import torch

from models.checkpoint import NormalizedModel, load_model, read_checkpoint
from models.dataset_info import DatasetInfo
from models.onnx_meta import OnnxMeta

INPUT, OUTPUT = "input", "output"


def example_input(model: NormalizedModel, checkpoint: dict[str, Any]) -> torch.Tensor:
    """A batch of two inputs of the exported graph: latent vectors for a GAN, raw samples otherwise."""
    if model.generative:
        return torch.randn(2, checkpoint["spec"]["model"]["latent_dim"])
    return torch.randn(2, *checkpoint["dataset_info"]["sample_shape"])


def export_onnx(checkpoint: dict[str, Any]) -> bytes:
    """The model as an ONNX file with input `input` and output `output`, batch size free; its metadata
    holds the dataset's info (shapes, class names) and, for a GAN, the latent size."""
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
    proto = program.model_proto
    meta = OnnxMeta(
        info=DatasetInfo.model_validate(checkpoint["dataset_info"]),
        generative=model.generative,
        latent_dim=checkpoint["spec"]["model"].get("latent_dim"),
    )
    for key, value in meta.as_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()  # type: ignore[no-any-return]


def export_checkpoint(data: bytes) -> bytes:
    """`export_onnx` of a checkpoint's bytes: what the API's child process runs."""
    return export_onnx(read_checkpoint(data))
