"""Small helpers the benchmarks share: percentiles, ratio cells and rich tables."""

import statistics
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

console = Console(width=140)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the two nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio_cell(values: Sequence[float]) -> str:
    """Median of paired per-round ratios, with their range."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def verdict(met: bool) -> str:
    return "[green]met[/]" if met else "[red]missed[/]"


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> Table:
    out = Table(title=title, caption=caption or None, title_justify="left", caption_justify="left")
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        out.add_row(*row)
    return out
