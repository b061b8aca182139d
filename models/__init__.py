"""nnforge's engine: specs, datasets, networks and the one training function, free of HTTP, Celery and SQL.

`import models.specs` stays torch-free (the API uses it); the torch-backed names below load on first use.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "fit": "models.train",
    "Hook": "models.train",
    "load_model": "models.checkpoint",
    "read_checkpoint": "models.checkpoint",
    "export_safetensors": "models.checkpoint",
    "dry_check": "models.dry_check",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
