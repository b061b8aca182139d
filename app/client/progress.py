"""A fit() hook that shows a run in the terminal and keeps its checkpoint on disk."""

import os
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from models.checkpoint import save_checkpoint
from models.train import EpochReport, Hook, StepReport


class RichProgressHook(Hook):
    def __init__(self, console: Console, destination: Path) -> None:
        self.console, self.destination = console, destination
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task: Any = None

    def __enter__(self) -> "RichProgressHook":
        self.bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.bar.stop()

    def on_step(self, report: StepReport) -> None:
        if self.task is None:
            self.task = self.bar.add_task("train", total=None, epoch=report.epoch, loss="")
        loss = " ".join(f"{k} {v:.4f}" for k, v in report.metrics.items())
        self.bar.update(self.task, completed=report.step, epoch=report.epoch, loss=loss)

    def on_epoch(self, report: EpochReport) -> None:
        if self.task is not None:
            self.bar.update(self.task, total=report.total_epochs * report.steps_per_epoch)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in report.metrics.items() if not k.startswith("test_"))
        best = " *" if report.is_best else ""
        self.console.print(
            f"epoch {report.epoch}/{report.total_epochs}  {shown}  "
            f"({report.samples_per_second:,.0f} samples/s){best}"
        )

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        if not checkpoint["resumable"]:
            return  # the file holds the run as it stands: the latest checkpoint, which resumes
        partial = self.destination.with_name(self.destination.name + ".partial")
        save_checkpoint(checkpoint, partial)
        os.replace(partial, self.destination)  # atomic: a reader never sees half a checkpoint
