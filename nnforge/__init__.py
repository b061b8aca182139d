"""The stable import for users: `from nnforge import Client, load_model`.

Both load on first use, so `import nnforge` costs neither httpx nor torch until a name is touched.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "Client": "app.client.client",
    "Job": "app.client.client",
    "NnforgeError": "app.client.client",
    "Sweep": "app.client.sweeps",
    "load_model": "models.checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nnforge' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
