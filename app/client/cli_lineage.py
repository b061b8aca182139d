"""`nnforge lineage JOB`: the jobs a job started from and those started from it, as a tree."""

import typer

from app.client.cli_jobs import JobArg, Output, OutputOpt, TokenOpt, UrlOpt, client, out, print_json, remote
from app.client.lineage import tree_lines


def lineage(
    job_id: JobArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Where a job came from (init_from) and what came from it: its ancestors, then its descendants."""
    with remote():
        data = client(url, token).job(job_id).lineage()
    if output is Output.json:
        print_json(data)
        return
    for line in tree_lines(data):
        out.print(line, highlight=False, markup=False)


def register(cli: typer.Typer) -> None:
    cli.command()(lineage)
