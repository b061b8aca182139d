"""How the remote CLI commands print: rich tables for people, JSON for scripts, errors pointing at fields."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.client.spec_locate import locate
from app.db.job_state import JobStatus

STATUS_STYLE = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
    JobStatus.PRUNED: "blue",
}


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str), flush=True)


def print_json_line(value: Any) -> None:
    print(json.dumps(value, default=str), flush=True)


def duration(job: dict[str, Any]) -> str:
    if not job.get("started_at"):
        return ""
    end = datetime.fromisoformat(job["finished_at"]) if job.get("finished_at") else datetime.now(UTC)
    seconds = (end - datetime.fromisoformat(job["started_at"])).total_seconds()
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s" if seconds >= 60 else f"{seconds:.1f}s"


def best_metric(job: dict[str, Any]) -> str:
    """The job's objective at its best epoch: what "best" means for this job, the same everywhere."""
    objective, best = job.get("objective"), job.get("best_metrics") or {}
    if objective is None or objective["metric"] not in best:
        return ""
    return f"{objective['metric']} {float(best[objective['metric']]):.4g}"


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(
        "id",
        "name",
        "tags",
        "status",
        "arch",
        "optimizer",
        "lr",
        "epoch",
        "best",
        "duration",
        box=None,
        header_style="bold",
    )
    for job in jobs:
        optimizer = job["spec"].get("optimizer", {})
        style = STATUS_STYLE.get(job["status"], "")
        progress = job["progress"]
        table.add_row(
            job["id"],
            job.get("name") or "",
            " ".join(job.get("tags") or []),
            f"[{style}]{job['status']}[/{style}]",
            job["arch"],
            str(optimizer.get("name", "")),
            f"{optimizer.get('lr', '')}",
            f"{progress['epoch']}/{progress['total_epochs']}",
            best_metric(job),
            duration(job),
        )
    return table


def print_status(console: Console, job: dict[str, Any]) -> None:
    style = STATUS_STYLE.get(job["status"], "")
    progress = job["progress"]
    console.print(f"job [bold]{job['id']}[/bold] {job.get('name') or ''}  [{style}]{job['status']}[/{style}]")
    if job.get("tags"):
        console.print("  tags: " + " ".join(job["tags"]), highlight=False, markup=False)
    console.print(
        f"  {job['arch']}, {job['num_parameters']:,} parameters, queue {job['queue']}"
        + (f" (position {job['queue_position']})" if job.get("queue_position") is not None else "")
    )
    console.print(
        f"  epoch {progress['epoch']}/{progress['total_epochs']}, step {progress['step']}"
        f"/{progress['total_steps'] or '?'} ({progress['fraction']:.0%}), "
        f"{duration(job) or 'not started'}"
    )
    if job.get("objective"):
        objective = job["objective"]
        epoch = f" at epoch {job['best_epoch']}" if job.get("best_epoch") else ""
        console.print(f"  objective: {objective['mode']} {objective['metric']}{epoch}")
    shown = (
        ("latest", job["latest_metrics"]),
        ("best", job["best_metrics"]),
        ("best checkpoint's test", job.get("best_test_metrics") or {}),
    )
    for label, values in shown:
        if values:
            console.print(
                f"  {label}: " + "  ".join(f"{k} {float(v):.4g}" for k, v in sorted(values.items()))
            )
    if job.get("error"):
        console.print(f"  [red]{job['error']['type']}[/red]: {job['error']['message'].strip()}")
    if job.get("notes"):
        notes = job["notes"].strip().replace("\n", "\n         ")  # later lines under the first
        console.print(f"  notes: {notes}", highlight=False, markup=False)


def metrics_table(series: dict[str, list[dict[str, Any]]]) -> Table:
    """One row per epoch with its epoch-level metrics (train_*, val_*, test_*). Values may arrive as "NaN"
    or "Infinity" (JSON has no such numbers): float() reads both forms."""
    names = sorted(name for name in series if name.startswith(("train_", "val_", "test_")))
    rows: dict[int, dict[str, float]] = {}
    for name in names:
        for point in series[name]:
            rows.setdefault(point["epoch"], {})[name] = point["value"]
    table = Table("epoch", *names, box=None, header_style="bold")
    for epoch in sorted(rows):
        table.add_row(
            str(epoch), *(f"{float(rows[epoch][n]):.4g}" if n in rows[epoch] else "" for n in names)
        )
    return table


def print_issues(console: Console, issues: list[dict[str, Any]], spec_file: Path | None = None) -> None:
    """Each problem as `file:line:col: field: reason (got value)` when the field is in the YAML file."""
    text = spec_file.read_text(encoding="utf-8") if spec_file is not None and spec_file.is_file() else None
    for issue in issues:
        where = ""
        if text is not None and (position := locate(text, str(issue.get("field", "")))) is not None:
            where = f"{spec_file}:{position[0]}:{position[1]}: "
        value = f" (got {issue['value']!r})" if issue.get("value") is not None else ""
        console.print(
            f"[red]error[/red] {where}{issue.get('field')}: {issue.get('reason')}{value}", highlight=False
        )
