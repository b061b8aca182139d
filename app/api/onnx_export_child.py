"""A checkpoint's ONNX export as a child of app.core.child_process runs it: the fork server imports this
module (torch with it) once; the API process itself never imports it."""

import os

import torch

# Before any tensor operation: a fork copies only the forking thread (app/core/fork_server.py).
torch.set_num_threads(1)

from models.onnx_export import export_checkpoint  # noqa: E402


def export(data: bytes) -> bytes:
    """The ONNX file of the checkpoint `data`; niced, so that the API beside it answers first."""
    os.nice(10)
    return export_checkpoint(data)
