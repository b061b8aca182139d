"""Checkpoint bytes in the format a user asked for. Torch loads on first use (safetensors); ONNX files come
from app/api/onnx_models.py, exported outside the API process."""

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


def convert(data: bytes, format_: Literal["pt", "safetensors"]) -> bytes:
    """`pt` is the stored checkpoint itself; safetensors the weights with the spec as metadata."""
    if format_ == "pt":
        return data
    from models.checkpoint import export_safetensors, read_checkpoint

    return export_safetensors(read_checkpoint(data))
