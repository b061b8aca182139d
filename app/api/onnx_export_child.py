"""A checkpoint's ONNX export as a child of app.core.child_process runs it: the fork server imports this
module (torch with it) once; the API process itself never imports it."""

import os

import torch

from models.onnx_export import export_checkpoint

torch.set_num_threads(1)  # a process forked after torch starts its thread pool could hang


def export(data: bytes) -> bytes:
    """The ONNX file of the checkpoint `data`; niced, so that the API beside it answers first."""
    os.nice(10)
    return export_checkpoint(data)
