"""The `nnforge` command line. Torch loads only inside the commands that train."""

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from app.client import cli_evaluate, cli_jobs, cli_lineage, cli_predict, cli_storage, cli_sweeps
from app.client.spec_files import apply_overrides, read_spec_file
from models.errors import SpecError
from models.specs import DatasetRef, JobSpec, parse_job_spec
from models.templates import TEMPLATES

cli = typer.Typer(
    help="nnforge: train the classic neural networks from a spec.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _fail(error: SpecError) -> None:
    for issue in error.issues:
        console.print(f"[red]error[/red] {issue.field}: {issue.reason} (got {issue.value!r})")
    raise typer.Exit(code=2)


@cli.command()
def train(
    spec_file: Annotated[Path, typer.Argument(help="job spec, YAML or JSON")],
    out: Annotated[
        Path | None, typer.Option(help="checkpoint path (default: SPEC.pt beside the spec)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: optimizer.lr=0.01")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads")] = 1,
    url: cli_jobs.UrlOpt = None,
    token: cli_jobs.TokenOpt = None,
) -> None:
    """Train a spec locally, without the service: a progress bar, a line per epoch, a checkpoint file. A
    spec's `dataset: {id}` is downloaded from the service (--url, NNFORGE_URL, or the local one)."""
    try:
        spec = parse_job_spec(apply_overrides(read_spec_file(spec_file), set_ or []))
    except SpecError as error:
        _fail(error)
    import torch

    from app.client.progress import RichProgressHook
    from models.train import fit

    torch.set_num_threads(threads)
    destination = out or spec_file.with_suffix(".pt")
    hook = RichProgressHook(console, destination)
    with tempfile.TemporaryDirectory(prefix="nnforge-dataset-") as scratch:
        if spec.dataset.id is not None:
            spec = _with_downloaded_dataset(spec, Path(scratch), url, token, spec_file)
        try:
            with hook:
                result = fit(spec, hook=hook)
        except SpecError as error:
            _fail(error)
    console.print(
        f"{result.status}: "
        + "  ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k.startswith("test_"))
    )
    console.print(f"checkpoint: {destination}")


def _with_downloaded_dataset(
    spec: JobSpec, folder: Path, url: str | None, token: str | None, spec_file: Path
) -> JobSpec:
    """The spec with its uploaded `dataset: {id}` replaced by the file, downloaded from the service."""
    assert spec.dataset.id is not None
    with cli_jobs.remote(spec_file):
        path, info = cli_jobs.client(url, token).download_dataset(spec.dataset.id, folder)
    label = info["label_column"]
    dataset = DatasetRef(path=str(path), label_column=label, unlabelled=label is None)
    return spec.model_copy(update={"dataset": dataset})


@cli.command()
def template(
    arch: Annotated[str, typer.Option(help=f"one of: {', '.join(TEMPLATES)}")] = "mlp",
    output: Annotated[str, typer.Option("-o", "--output", help="yaml or json")] = "yaml",
    sweep: Annotated[
        bool, typer.Option("--sweep", help="a starter sweep instead (nnforge sweep submit)")
    ] = False,
) -> None:
    """Print a starter spec that trains in under a minute on a CPU (--sweep: a search over one)."""
    if sweep:
        from app.client.sweep_template import SWEEP_TEMPLATE

        # YAML keeps the template's comments, which explain each field.
        text = json.dumps(yaml.safe_load(SWEEP_TEMPLATE), indent=2) if output == "json" else SWEEP_TEMPLATE
        typer.echo(text.rstrip("\n"))
        return
    if arch not in TEMPLATES:
        console.print(
            f"[red]error[/red] --arch: unknown template {arch!r}; choose from {', '.join(TEMPLATES)}"
        )
        raise typer.Exit(code=2)
    spec: dict[str, Any] = TEMPLATES[arch]
    typer.echo(json.dumps(spec, indent=2) if output == "json" else yaml.safe_dump(spec, sort_keys=False))


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (default: HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: PORT or 8000)")] = None,
    worker: Annotated[bool, typer.Option(help="also start a worker")] = True,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="jobs trained at once (default: WORKER_CONCURRENCY, else cores)"),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="the worker's output here too, not only in its log file")
    ] = False,
) -> None:
    """Run the API and a worker: SQLite and a filesystem broker under NNFORGE_HOME unless DATABASE_URL and
    REDIS_URL say otherwise. Migrates the database first; a child that dies is restarted; Ctrl-C stops
    everything."""
    from app.client.serve import serve as run_service
    from app.core.settings import Settings

    given = {"host": host, "port": port, "worker_concurrency": workers}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    raise typer.Exit(code=run_service(settings, with_worker=worker, verbose=verbose))


@cli.command()
def api(
    host: Annotated[str | None, typer.Option(help="listen address (default: HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: PORT or 8000)")] = None,
    app: Annotated[str | None, typer.Option(hidden=True, help="another app factory (benchmarks)")] = None,
) -> None:
    """Run the API alone (no migration, no worker): uvicorn with the connection limits and read timeouts
    of the settings (MAX_CONNECTIONS, HEADER_TIMEOUT_SECONDS, BODY_TIMEOUT_SECONDS, ...)."""
    from app.client.serve import API_APP, run_api
    from app.core.settings import Settings

    given = {"host": host, "port": port}
    run_api(Settings(**{k: v for k, v in given.items() if v is not None}), app=app or API_APP)  # type: ignore[arg-type]


@cli.command()
def worker() -> None:
    """Run a Celery worker (queues by WORKER_DEVICE: cpu, gpu, or auto-detected; WORKER_CONCURRENCY jobs at
    once, by default one per GPU or enough to use the cores)."""
    from app.client.serve import worker_command
    from app.core.queue import ensure_broker_folders
    from app.core.settings import get_settings

    settings = get_settings()
    ensure_broker_folders(settings)
    command = worker_command(settings)
    os.execv(command[0], command)


@cli.command()
def migrate() -> None:
    """Apply the database migrations (`serve` does this itself)."""
    from app.core.settings import get_settings
    from app.db.migrate import upgrade_to_head

    upgrade_to_head(get_settings().resolved_database_url)


token_cli = typer.Typer(help="API tokens (run where the database is reachable).", no_args_is_help=True)
cli.add_typer(token_cli, name="token")


def _token_session():  # type: ignore[no-untyped-def]
    from app.core.settings import get_settings
    from app.db.engine import make_engine, make_session_factory, transaction

    return transaction(make_session_factory(make_engine(get_settings().resolved_database_url)))


@token_cli.command("create")
def token_create(
    owner: Annotated[str, typer.Option(help="who the token acts for; objects are scoped by owner")],
    name: Annotated[str | None, typer.Option(help="a note to recognise it by")] = None,
) -> None:
    """Create a token and print it once: it is stored hashed and cannot be shown again."""
    from app.api.tokens import create_token

    with _token_session() as session:
        token = create_token(session=session, owner=owner, name=name)
    console.print(f"token {token.id} for owner {owner!r} (shown once):")
    typer.echo(token.secret)


@token_cli.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="the id printed by `token create`")]) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from app.api.tokens import revoke_token

    with _token_session() as session:
        revoked = revoke_token(session=session, token_id=token_id)
    if not revoked:
        console.print(f"[red]error[/red] no live token with id {token_id}")
        raise typer.Exit(code=1)
    console.print(f"revoked {token_id}")


@token_cli.command("list")
def token_list() -> None:
    """Token ids, owners and states (never the tokens themselves)."""
    from app.api.tokens import list_tokens

    with _token_session() as session:
        for row in list_tokens(session=session):
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "live"
            typer.echo(f"{row.id}  {row.owner}  {state}  {row.name or ''}")


datasets = cli_jobs.register(cli)  # submit, list, status, metrics, logs, cancel, download, datasets: remote
cli_predict.register(cli)  # predict: remote
cli_storage.register(cli, datasets)  # delete, usage, datasets delete
cli_evaluate.register(cli)  # evaluate
cli_sweeps.register(cli)  # sweep submit, list, status, trials, cancel
cli_lineage.register(cli)  # lineage


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
