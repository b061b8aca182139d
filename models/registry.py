"""Architecture registry: each `arch` name maps to its network builder and its training procedure,
so the training loop never branches on the architecture. Each architecture of the `ModelSpec` union
registers itself from its own module, `models/archs/<arch>.py`."""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from torch import nn

from models.procedures import Procedure
from models.specs import Problem, arch_specs

Builder = Callable[[Any, Problem], nn.Module]


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Builder  # (model spec, problem) -> network taking the normalised input view
    procedure: Procedure
    generative: bool = False  # the trained network maps latent vectors to samples (no inputs, no targets)
    # The sub-networks that each end in an output layer (a GAN's generator and discriminator); "" is the
    # whole network. `init_from: {load: body}` gives those layers new weights (models/transfer.py).
    output_networks: tuple[str, ...] = ("",)


_REGISTRY: dict[str, Architecture] = {}


def register_architecture(
    name: str,
    *,
    build: Builder,
    procedure: Procedure,
    generative: bool = False,
    output_networks: tuple[str, ...] = ("",),
) -> Architecture:
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} is already registered")
    _REGISTRY[name] = Architecture(name, build, procedure, generative, output_networks)
    return _REGISTRY[name]


def get_architecture(name: str) -> Architecture:
    _load_builtin_architectures()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; registered: {list_architectures()}") from None


def list_architectures() -> list[str]:
    _load_builtin_architectures()
    return sorted(_REGISTRY)


def _load_builtin_architectures() -> None:
    for name in arch_specs():  # each module registers itself on import
        import_module(f"models.archs.{name}")
