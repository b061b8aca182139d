"""The CLI commands that talk to a running nnforge service: submit, list, status, tag, metrics, logs,
cancel, download, datasets. A job is named by its id or a unique prefix of it (4+ characters). Exit codes:
0 ok (a followed job succeeded), 1 the job failed or was cancelled, 2 bad input (the spec, an argument, a
4xx, an ambiguous id prefix), 3 the service could not be reached or answered 5xx."""

import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx2
import typer
from rich.console import Console

from app.client.cli_render import (
    jobs_table,
    metrics_table,
    print_issues,
    print_json,
    print_json_line,
    print_status,
)
from app.client.client import AmbiguousJobId, Client, NnforgeError
from app.client.lineage import from_overrides
from app.db.job_state import JobStatus, Priority

console = Console(stderr=True)
out = Console()


class Output(StrEnum):
    text = "text"
    json = "json"


UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="API URL (default: NNFORGE_URL, config file, http://127.0.0.1:8000)"),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", help="API token (default: NNFORGE_TOKEN, config file, $NNFORGE_HOME/token)"),
]
OutputOpt = Annotated[Output, typer.Option("-o", "--output", help="text for people, json for scripts")]
JobArg = Annotated[str, typer.Argument(help="the job id, or a unique prefix of it (4+ characters)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a field: optimizer.lr=0.01")]
FollowOpt = Annotated[bool, typer.Option("-f", "--follow", help="print new entries until the job ends")]


@contextlib.contextmanager
def remote(spec_file: Path | None = None) -> Iterator[None]:
    """Turn API and connection errors into messages and exit codes."""
    try:
        yield
    except NnforgeError as error:
        if error.errors:
            print_issues(console, error.errors, spec_file)
        else:
            console.print(f"[red]error[/red] {error}", highlight=False)
        raise typer.Exit(code=2 if error.status < 500 else 3) from None
    except AmbiguousJobId as error:
        console.print(f"[red]error[/red] {error}", highlight=False)
        raise typer.Exit(code=2) from None
    except httpx2.TransportError as error:
        console.print(f"[red]error[/red] cannot reach the service: {error}", highlight=False)
        raise typer.Exit(code=3) from None


def client(url: str | None, token: str | None) -> Client:
    try:
        return Client(url, token)
    except ValueError as error:  # an unreadable config file
        console.print(f"[red]error[/red] {error}", highlight=False)
        raise typer.Exit(code=2) from None


def read_spec(spec_file: Path, overrides: list[str]) -> dict[str, Any]:
    """The spec as the YAML file and --set say, validated here first so errors point into the file."""
    from app.client.spec_files import apply_overrides, read_spec_file
    from models.errors import SpecError
    from models.specs import parse_job_spec

    try:
        raw = apply_overrides(read_spec_file(spec_file), overrides)
        body = {k: v for k, v in raw.items() if k not in ("name", "tags", "notes", "priority")}
        parse_job_spec(body)
    except SpecError as error:
        print_issues(console, [vars(issue) for issue in error.issues], spec_file)
        raise typer.Exit(code=2) from None
    return raw


def exit_code(status: str) -> int:
    return 1 if status in (JobStatus.FAILED, JobStatus.CANCELLED) else 0


def submit(
    spec_file: Annotated[Path, typer.Argument(help="job spec, YAML or JSON (`nnforge template`)")],
    set_: SetOpt = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="start from a job's checkpoint: JOB[:best|latest|ID]")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a name to recognise the job by")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="a tag to find it by (repeatable; added to the file's)")
    ] = None,
    notes: Annotated[str | None, typer.Option(help="free text about the job (instead of the file's)")] = None,
    priority: Annotated[
        Priority | None,
        typer.Option(help="among your own queued jobs, high ones start first (default: the file's; normal)"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the job until it ends")] = True,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Submit a job and follow it (a progress bar and a line per epoch) until it ends; the exit code is 0
    only when it succeeds."""
    from app.client.cli_follow import Follower

    spec = read_spec(spec_file, [*(from_overrides(from_) if from_ else []), *(set_ or [])])
    with remote(spec_file):
        tags = list(dict.fromkeys([*spec.get("tags", []), *(tag or [])]))
        notes = notes if notes is not None else spec.get("notes")
        chosen = priority.value if priority is not None else spec.get("priority")
        job = client(url, token).submit(
            spec, name=name or spec.get("name"), tags=tags, notes=notes, priority=chosen
        )
        if output is Output.text:
            console.print(f"submitted job [bold]{job.id}[/bold] ({job.data['num_parameters']:,} parameters)")
        if not wait:
            if output is Output.json:
                print_json(job.data)
            else:
                out.print(job.id)
            return
        try:
            final = Follower(console).follow(job) if output is Output.text else job.wait().data
        except KeyboardInterrupt:
            console.print(
                f"stopped following; the job goes on: nnforge status {job.id} | nnforge cancel {job.id}"
            )
            raise typer.Exit(code=130) from None
    if output is Output.json:
        print_json(final)
    else:
        print_status(console, final)
    raise typer.Exit(code=exit_code(final["status"]))


def list_jobs(
    status: Annotated[JobStatus | None, typer.Option(help="only jobs in this status")] = None,
    arch: Annotated[str | None, typer.Option(help="mlp, cnn, rnn or gan")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="with this tag (repeatable: all)")] = None,
    name: Annotated[str | None, typer.Option(help="whose name contains this, in any case")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd, momentum, adagrad, rmsprop or adam")] = None,
    dataset: Annotated[str | None, typer.Option(help="a built-in's name or an upload's id")] = None,
    created_after: Annotated[str | None, typer.Option(help="ISO date or time, UTC unless it says")] = None,
    created_before: Annotated[str | None, typer.Option(help="ISO date or time, UTC unless it says")] = None,
    sort: Annotated[
        str,
        typer.Option(
            help="created, duration or best.METRIC (e.g. best.val_loss); '-' first for descending; "
            "jobs without the key last"
        ),
    ] = "-created",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Your jobs, newest first unless --sort says otherwise; every filter given must hold."""
    with remote():
        found = client(url, token).jobs(
            status=status,
            arch=arch,
            tags=tag or [],
            name=name,
            optimizer=optimizer,
            dataset=dataset,
            created_after=created_after,
            created_before=created_before,
            sort=sort,
            limit=limit,
        )
        jobs = [job.data for job in found]
    if output is Output.json:
        print_json(jobs)
    else:
        out.print(jobs_table(jobs))


def status(
    job_id: JobArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.text
) -> None:
    """A job's status, progress, metrics and error; exit code 1 when it failed or was cancelled."""
    with remote():
        job = client(url, token).job(job_id).data
    if output is Output.json:
        print_json(job)
    else:
        print_status(out, job)
    raise typer.Exit(code=exit_code(job["status"]))


def tag(
    job_id: JobArg,
    changes: Annotated[
        list[str] | None, typer.Argument(help="+TAG (or TAG) adds, -TAG removes; none: print the tags")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: Annotated[Output, typer.Option("--output", help="text or json")] = Output.text,
) -> None:
    """Add and remove a job's tags (`nnforge tag 1d44 +baseline -draft`) and print them. No -o here: -TAG
    must stay a tag."""
    add = [change.removeprefix("+") for change in changes or [] if not change.startswith("-")]
    remove = [change[1:] for change in changes or [] if change.startswith("-")]
    with remote():
        job = client(url, token).job(job_id)
        if add or remove:
            job.tag(add=add, remove=remove)
    if output is Output.json:
        print_json(job.data)
    else:
        out.print(f"{job.id}  {' '.join(job.data['tags']) or '(no tags)'}", highlight=False, markup=False)


def print_lines(
    items: Iterator[dict[str, Any]], output: Output, text: Callable[[dict[str, Any]], str]
) -> None:
    """One line per item as it arrives: JSON for scripts, `text(item)` for people."""
    for item in items:
        if output is Output.json:
            print_json_line(item)
        else:
            out.print(text(item), highlight=False, markup=False)


def metric_line(point: dict[str, Any]) -> str:
    value = float(point["value"])  # "NaN" and "Infinity" arrive as text
    return f"{point['name']:>16}  epoch {point['epoch']:>4}  step {point['step']:>7}  {value:.6g}"


def log_line(line: dict[str, Any]) -> str:
    return f"{line['time'][:19]} {line['level']:<7} {line['message']}"


def metrics(
    job_id: JobArg,
    follow: FollowOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Epoch metrics as a table (-o json: every series); with -f, each new point as it is written."""
    with remote():
        job = client(url, token).job(job_id)
        if not follow:
            series = job.metrics()
            if output is Output.json:
                print_json(series)
            else:
                out.print(metrics_table(series))
            return
        points = (p for event in job.stream() if event.event == "metrics" for p in event.data["points"])
        print_lines(points, output, metric_line)


def logs(
    job_id: Annotated[
        str | None,
        typer.Argument(help="the job id or a unique prefix; none: the output of `nnforge serve`'s worker"),
    ] = None,
    follow: FollowOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """The worker's log lines of a job: start, device, each epoch, warnings, the traceback of a failure.
    Without a job: the embedded worker's own output (its log file under NNFORGE_HOME)."""
    if job_id is None:
        print_service_log(follow)
        return
    with remote():
        job = client(url, token).job(job_id)
        print_lines(job.follow_logs() if follow else iter(job.logs()["items"]), output, log_line)


SERVICE_LOG_LINES = 200


def print_service_log(follow: bool) -> None:
    from app.client.serve import service_log
    from app.core.settings import Settings

    path = service_log(Settings())
    if not path.exists():
        console.print(f"[red]error[/red] no worker output at {path}: has `nnforge serve` run here?")
        raise typer.Exit(code=1)
    with path.open(errors="replace") as lines:
        for line in deque(lines, maxlen=SERVICE_LOG_LINES):
            sys.stdout.write(line)
        while follow:
            line = lines.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.5)


def samples(
    job_id: JobArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.text
) -> None:
    """A generative job's samples of its latest epoch (in the dataset's units); -o json prints every value."""
    with remote():
        drawn = client(url, token).job(job_id).samples()
    if output is Output.json:
        print_json(drawn)
        return
    out.print(
        f"epoch {drawn['epoch']}: {len(drawn['samples'])} generated {drawn['kind']} of shape "
        f"{tuple(drawn['shape'])}, beside {len(drawn['reference'])} real ones (-o json for the values)",
        highlight=False,
    )


def cancel(
    job_id: JobArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.text
) -> None:
    """Cancel a job: a queued one ends at once, a running one within a step, keeping a checkpoint."""
    with remote():
        job = client(url, token).job(job_id).cancel().data
    if output is Output.json:
        print_json(job)
    else:
        print_status(out, job)


def download(
    job_id: JobArg,
    path: Annotated[Path | None, typer.Argument(help="file or folder (default: the server's name)")] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="pt (resume, rebuild), safetensors (weights + spec) or onnx (serving; a GAN's generator)",
        ),
    ] = "pt",
    checkpoint: Annotated[str, typer.Option(help="best, latest or a checkpoint id")] = "best",
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Download a checkpoint of a job."""
    if format_ not in ("pt", "safetensors", "onnx"):
        console.print(f"[red]error[/red] --format: {format_!r} is not one of pt, safetensors, onnx")
        raise typer.Exit(code=2)
    with remote():
        saved = (
            client(url, token)
            .job(job_id)
            .download(
                path,
                format=format_,  # type: ignore[arg-type]
                checkpoint=checkpoint,
            )
        )
    if output is Output.json:
        print_json({"path": str(saved)})
    else:
        out.print(str(saved))


def datasets_upload(
    file: Annotated[Path, typer.Argument(help=".npz (x, optional y) or .csv", exists=True, dir_okay=False)],
    label_column: Annotated[str | None, typer.Option(help="CSV: the target column")] = None,
    unlabelled: Annotated[
        bool,
        typer.Option(help="CSV without --label-column: a column named label/target/class/y is a feature"),
    ] = False,
    name: Annotated[str | None, typer.Option(help="what to call it (default: the file's name)")] = None,
    description: Annotated[str | None, typer.Option(help="a line about it")] = None,
    force: Annotated[bool, typer.Option(help="store it again even if these bytes were uploaded")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Upload a dataset; reference it in a spec as `dataset: {id: …}`. The same file again answers the
    dataset stored before."""
    with remote():
        dataset = client(url, token).upload_dataset(
            file,
            label_column=label_column,
            unlabelled=unlabelled,
            name=name,
            description=description,
            force=force,
        )
    if output is Output.json:
        print_json(dataset)
        return
    out.print(
        f"{dataset['id']}  {dataset['name']}: {dataset['task']}, {dataset['num_samples']} samples "
        f"of shape {dataset['sample_shape']}",
        highlight=False,
    )


def datasets_list(url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.text) -> None:
    """Built-in datasets (by name) and your uploads (by id)."""
    with remote():
        items = client(url, token).datasets()
    if output is Output.json:
        print_json(items)
        return
    for item in items:
        out.print(
            f"{item['id'] or item['name']:<36}  {item['name']:<16} {item['task']:<15} "
            f"{item['num_samples']:>8} samples  {item['sample_shape']}",
            highlight=False,
        )


def register(cli: typer.Typer) -> typer.Typer:
    """Add these commands to the `nnforge` command line; returns its `datasets` group."""
    cli.command()(submit)
    cli.command("list")(list_jobs)
    cli.command()(status)
    # Unknown options are arguments here, so that `-draft` removes a tag.
    cli.command(context_settings={"ignore_unknown_options": True})(tag)
    cli.command()(metrics)
    cli.command()(logs)
    cli.command()(samples)
    cli.command()(cancel)
    cli.command()(download)
    datasets = typer.Typer(help="Upload and list datasets.", no_args_is_help=True)
    datasets.command("upload")(datasets_upload)
    datasets.command("list")(datasets_list)
    cli.add_typer(datasets, name="datasets")
    return datasets
