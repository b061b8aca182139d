"""Checkpoint bytes in the format a user asked for. Torch (and for ONNX, onnxscript) load on first use."""

from importlib.util import find_spec
from typing import Literal

Format = Literal["pt", "safetensors", "onnx"]


class ExportUnavailable(RuntimeError):
    """This server lacks what the format needs (the `onnx` extra)."""


def check_onnx_export() -> None:
    """ExportUnavailable unless this server can export ONNX (download, and predict's first use of a
    checkpoint)."""
    if find_spec("onnxscript") is None or find_spec("onnx") is None:
        raise ExportUnavailable("ONNX export needs the server's optional extra: pip install 'nnforge[onnx]'")


def convert(data: bytes, format_: Format) -> bytes:
    """`pt` is the stored checkpoint itself; safetensors the weights with the spec as metadata; onnx the
    raw-input model (a GAN's generator)."""
    if format_ == "pt":
        return data
    if format_ == "onnx":
        check_onnx_export()
    from models.checkpoint import export_safetensors, read_checkpoint

    checkpoint = read_checkpoint(data)
    if format_ == "safetensors":
        return export_safetensors(checkpoint)
    from models.onnx_export import export_onnx

    return export_onnx(checkpoint)
