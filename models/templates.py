"""Starter specs, one per architecture (and a few variants), tuned to learn in under a minute on a CPU.

Each architecture's spec declares its own (`ArchSpec.templates` in models/specs.py); this collects them in the
`ModelSpec` union's order. `nnforge template` prints them, the learning tests train them, and the benchmarks
time them.
"""

from typing import Any

from models.specs import arch_specs

TEMPLATES: dict[str, dict[str, Any]] = {
    name: template for spec in arch_specs().values() for name, template in spec.templates.items()
}
