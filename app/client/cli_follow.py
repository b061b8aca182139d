"""Following a job in the terminal from its event stream: a progress bar (epoch, step, loss, accuracy,
ETA) and a line per epoch. Off a terminal (CI logs) rich draws no bar, and the epoch lines remain."""

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.client.cli_render import STATUS_STYLE
from app.client.client import Job
from app.db.job_state import TERMINAL, JobStatus

EPOCH_PREFIXES = ("train_", "val_", "test_")


def epoch_line(epoch: int, total: int, metrics: dict[str, float]) -> str:
    order = sorted(metrics, key=lambda k: (EPOCH_PREFIXES.index(k.split("_")[0] + "_"), k))
    return f"epoch {epoch}/{total}  " + "  ".join(f"{k} {metrics[k]:.4f}" for k in order)


class Follower:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bar.add_task("train", total=None, epoch="-", metrics="")
        self.status: str | None = None
        self.epoch, self.total_epochs = 0, 0
        self.step_metrics: dict[str, float] = {}
        self.pending: dict[int, dict[str, float]] = {}  # epoch metrics not yet printed

    def follow(self, job: Job) -> dict[str, Any]:
        """Show the job until it ends; returns its final state."""
        with self.bar:
            for event in job.stream():
                getattr(self, f"on_{event.event}", lambda data: None)(event.data)
        self._print_epochs(up_to=None)
        return job.refresh().data

    def on_status(self, job: dict[str, Any]) -> None:
        # The end is reported after the last epoch line (the caller prints the final state), not here: a
        # short job's status can change before its last metric rows have been shown.
        if job["status"] != self.status and job["status"] not in TERMINAL:
            self.status = job["status"]
            style = STATUS_STYLE.get(job["status"], "")
            retried = job["status"] == JobStatus.RUNNING and job["attempt"] > 1
            attempt = f" (attempt {job['attempt']})" if retried else ""
            self.console.print(f"job {job['id']} [{style}]{job['status']}[/{style}]{attempt}")

    def on_progress(self, data: dict[str, Any]) -> None:
        progress = data["progress"]
        self.epoch, self.total_epochs = progress["epoch"], progress["total_epochs"]
        self.bar.update(
            self.task,
            total=progress["total_steps"],
            completed=progress["step"],
            epoch=f"{min(self.epoch + 1, self.total_epochs)}/{self.total_epochs}",
        )

    def on_metrics(self, data: dict[str, Any]) -> None:
        for point in data["points"]:
            if point["name"].startswith(EPOCH_PREFIXES):
                self.pending.setdefault(point["epoch"], {})[point["name"]] = float(point["value"])
            else:
                self.step_metrics[point["name"]] = float(point["value"])  # "NaN" arrives as text
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(self.step_metrics.items()))
        self.bar.update(self.task, metrics=shown)
        self._print_epochs(up_to=self.epoch)

    def _print_epochs(self, up_to: int | None) -> None:
        """Epoch E's metrics are written with the progress that says epoch E is done."""
        for epoch in sorted(self.pending):
            if up_to is None or epoch <= up_to:
                self.console.print(epoch_line(epoch, self.total_epochs, self.pending.pop(epoch)))
