"""The CLI commands that remove what accumulates and show what it takes: delete (jobs by id, or in bulk by
status and age), datasets delete, usage. A deletion asks first unless --yes; with no terminal to ask on
(a script, a pipe) and no --yes it refuses. Exit codes as the other remote commands: 0 done, 1 declined,
2 bad input or a refused deletion, 3 the service could not be reached."""

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from app.client.cli_jobs import Output, OutputOpt, TokenOpt, UrlOpt, client, console, out, remote
from app.client.cli_render import print_json
from app.client.client import Client, Job, NnforgeError
from app.db.job_state import TERMINAL, JobStatus

AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
ALL_PAGES = 10**9  # Client.jobs follows every page up to this many jobs

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="delete without asking")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="list what would be deleted, delete nothing")]


def parse_age(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` (also `90s`, `1.5d`) as a duration."""
    match = AGE.match(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not an age like 30m, 12h, 7d or 2w", param_hint="--older-than")
    return timedelta(seconds=float(match.group(1)) * SECONDS[match.group(2)])


def interactive() -> bool:
    return sys.stdin.isatty()


def confirm(question: str, *, yes: bool) -> None:
    """Go on when --yes or the user says so at a terminal; refuse without a terminal to ask on."""
    if yes:
        return
    if not interactive():
        console.print("[red]error[/red] refusing to delete without confirmation (no terminal): pass --yes")
        raise typer.Exit(code=2)
    if not typer.confirm(question, default=False, err=True):
        console.print("nothing deleted")
        raise typer.Exit(code=1)


def size(n: int) -> str:
    """Bytes for people: 512 B, 1.5 KiB, 3.2 MiB, 1.0 GiB."""
    if n < 1024:
        return f"{n:,} B"
    value, unit = n / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:,.1f} {unit}"


def _finished_before(job: Job, cutoff: datetime | None) -> bool:
    finished = job.data.get("finished_at")
    if job.status not in TERMINAL or finished is None:
        return False
    return cutoff is None or datetime.fromisoformat(finished) < cutoff


def _select(
    api: Client, job_ids: list[str], status: JobStatus | None, older_than: str | None
) -> tuple[list[Job], list[str]]:
    """The jobs to delete and the errors about those that cannot be: named ones (each looked up, so a
    queued or running one is refused before anything is deleted), or every finished job of `status` that
    finished more than `older_than` ago, read from GET /v1/jobs page by page."""
    errors: list[str] = []
    if not job_ids:
        cutoff = datetime.now(UTC) - parse_age(older_than) if older_than else None
        return [job for job in api.jobs(status=status, limit=ALL_PAGES) if _finished_before(job, cutoff)], []
    chosen: list[Job] = []
    for job_id in job_ids:
        try:
            job = api.job(job_id)
        except NnforgeError as error:
            errors.append(f"{job_id}: {error.detail}")
            continue
        if job.status in TERMINAL:
            chosen.append(job)
        else:
            errors.append(f"{job.id} is {job.status}: cancel it first (nnforge cancel {job.id})")
    return chosen, errors


def _job_line(job: Job) -> str:
    finished = (job.data.get("finished_at") or "")[:16].replace("T", " ")
    return (
        f"{job.id}  {job.status:<9}  {job.data['arch']:<4}  finished {finished}  {job.data.get('name') or ''}"
    )


def delete(
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="job ids; or select with --status/--older-than")
    ] = None,
    status: Annotated[JobStatus | None, typer.Option(help="bulk: finished jobs with this status")] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="bulk: finished longer ago than this: 12h, 7d, 2w")
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Delete finished jobs and everything they stored (metrics, logs, samples, checkpoints): those named,
    or in bulk, e.g. `nnforge delete --status failed --older-than 7d`. Lists them and asks first."""
    bulk = status is not None or older_than is not None
    if bool(job_ids) == bulk:
        console.print("[red]error[/red] name the jobs, or select them with --status and/or --older-than")
        raise typer.Exit(code=2)
    if status is not None and status not in TERMINAL:
        console.print(f"[red]error[/red] --status {status}: only finished jobs can be deleted; cancel first")
        raise typer.Exit(code=2)
    if older_than is not None:
        parse_age(older_than)
    with remote():
        api = client(url, token)
        jobs, errors = _select(api, job_ids or [], status, older_than)
        for line in errors:
            console.print(f"[red]error[/red] {line}", highlight=False)
        if output is Output.text:
            for job in jobs:
                out.print(_job_line(job), highlight=False, markup=False)
        if not jobs or dry_run:
            if output is Output.json:
                print_json({"deleted": [], "selected": [job.id for job in jobs], "errors": errors})
            elif not jobs:
                console.print("no finished job matches" if bulk else "nothing to delete")
            raise typer.Exit(code=2 if errors else 0)
        confirm(f"Delete these {len(jobs)} jobs and everything they stored?", yes=yes)
        deleted = _delete_each(jobs, errors)
    if output is Output.json:
        print_json({"deleted": deleted, "errors": errors})
    else:
        console.print(f"deleted {len(deleted)} of {len(jobs)} jobs")
    raise typer.Exit(code=2 if errors else 0)


def _delete_each(jobs: list[Job], errors: list[str]) -> list[str]:
    deleted: list[str] = []
    for job in jobs:
        try:
            job.delete()
            deleted.append(job.id)
        except NnforgeError as error:
            errors.append(f"{job.id}: {error.detail}")
            console.print(f"[red]error[/red] {job.id}: {error.detail}", highlight=False)
    return deleted


def datasets_delete(
    dataset_ids: Annotated[list[str], typer.Argument(help="ids of your uploads")],
    yes: YesOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Delete uploaded datasets. Refused while a queued or running job uses one; finished jobs that used it
    keep their checkpoints (they show `dataset_deleted`)."""
    with remote():
        api = client(url, token)
        found = [api.dataset(dataset_id) for dataset_id in dataset_ids]
        if output is Output.text:
            for item in found:
                out.print(f"{item['id']}  {item['name']}  {size(item['size'] or 0)}", highlight=False)
        confirm(f"Delete these {len(found)} datasets?", yes=yes)
        errors: list[str] = []
        deleted: list[str] = []
        for item in found:
            try:
                api.delete_dataset(item["id"])
                deleted.append(item["id"])
            except NnforgeError as error:
                errors.append(f"{item['id']}: {error.detail}")
                console.print(f"[red]error[/red] {item['id']}: {error.detail}", highlight=False)
    if output is Output.json:
        print_json({"deleted": deleted, "errors": errors})
    else:
        console.print(f"deleted {len(deleted)} of {len(found)} datasets")
    raise typer.Exit(code=2 if errors else 0)


def usage(url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.text) -> None:
    """What you store: bytes and counts of jobs, checkpoints, metric rows, log lines and uploads, against
    the service's MAX_STORAGE_BYTES_PER_OWNER."""
    with remote():
        report: dict[str, Any] = client(url, token).usage()
    if output is Output.json:
        print_json(report)
        return
    for kind in ("checkpoints", "datasets", "metrics", "logs", "jobs"):
        amount = report[kind]
        out.print(f"{kind:<12} {amount['count']:>10,}  {size(amount['bytes']):>12}", highlight=False)
    limit = report["limit_bytes"]
    total = f"{'total':<12} {'':>10}  {size(report['total_bytes']):>12}"
    out.print(
        total + (f"  of {size(limit)} allowed" if limit is not None else "  (no limit)"), highlight=False
    )


def register(cli: typer.Typer, datasets: typer.Typer) -> None:
    """Add these commands to the `nnforge` command line and its `datasets` group."""
    cli.command()(delete)
    cli.command()(usage)
    datasets.command("delete")(datasets_delete)
