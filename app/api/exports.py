"""Checkpoint bytes in the format a user asked for, never importing torch into the API process: safetensors
is converted in a bounded child (app/core/child_process.py); ONNX files come from app/api/onnx_models.py,
exported outside the API process too."""

from importlib.util import find_spec
from typing import Literal

from app.core import child_process
from app.core.settings import Settings

child_process.preload("models.checkpoint")

Format = Literal["pt", "safetensors", "onnx"]


class ConversionFailed(RuntimeError):
    """The child converting a checkpoint ran out of time or memory, or died."""


class ExportUnavailable(RuntimeError):
    """This server lacks what the format needs (the `onnx` extra)."""


def check_onnx_export() -> None:
    """ExportUnavailable unless this server can export ONNX (download, and predict's first use of a
    checkpoint)."""
    if find_spec("onnxscript") is None or find_spec("onnx") is None:
        raise ExportUnavailable("ONNX export needs the server's optional extra: pip install 'nnforge[onnx]'")


def convert(data: bytes, format_: Literal["pt", "safetensors"], settings: Settings) -> bytes:
    """`pt` is the stored checkpoint itself; safetensors the weights with the spec as metadata."""
    if format_ == "pt":
        return data
    try:
        converted: bytes = child_process.call(
            "models.checkpoint:safetensors_from_bytes",
            data,
            memory_bytes=settings.predict_export_memory_bytes,
            timeout_seconds=settings.predict_export_timeout_seconds,
        )
    except child_process.ChildFailed as failure:
        raise ConversionFailed(f"the conversion to safetensors {failure}") from None
    return converted
