"""`nnforge predict JOB --input file.npy|file.csv`: a checkpoint's answers for a file of raw samples (or a
GAN's samples with --n and --seed), printed as text or JSON."""

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.client.cli_jobs import JobArg, Output, OutputOpt, TokenOpt, UrlOpt, client, console, remote


def read_inputs(path: Path) -> list[Any]:
    """.npy: an array of samples (any shape per sample). .csv: one flat sample per row, numbers only; a
    first row that is not all numbers is a header and skipped."""
    if path.suffix == ".npy":
        import numpy as np

        return np.load(path, allow_pickle=False).tolist()  # type: ignore[no-any-return]
    if path.suffix != ".csv":
        raise ValueError(f"--input: {path.name} is neither .npy nor .csv")
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]
    for number, row in enumerate(rows, start=1):
        if not _numeric(row):
            raise ValueError(f"--input: row {number} of {path.name} holds something other than numbers")
    return [[float(cell) for cell in row] for row in rows]


def _numeric(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def predict(
    job_id: JobArg,
    input_: Annotated[
        Path | None,
        typer.Option("--input", help=".npy (samples) or .csv (a flat sample per row)", dir_okay=False),
    ] = None,
    n: Annotated[int | None, typer.Option(min=1, help="a GAN's samples to generate (default 16)")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="a GAN's latent seed (default 0)")] = None,
    checkpoint: Annotated[str, typer.Option(help="best, latest or a checkpoint id")] = "best",
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Predict with a job's checkpoint: the class and its probability per sample, regression outputs, or a
    GAN's samples (--n, --seed). The server runs the model (ONNX Runtime); nothing loads torch here."""
    inputs = None
    if input_ is not None:
        try:
            inputs = read_inputs(input_)
        except (OSError, ValueError) as error:
            console.print(f"[red]error[/red] {error}", highlight=False)
            raise typer.Exit(code=2) from None
    with remote():
        answer = client(url, token).job(job_id).predict(inputs, n=n, seed=seed, checkpoint=checkpoint)
    if output is Output.json:
        typer.echo(json.dumps(answer))
    elif "classes" in answer:
        pairs = zip(answer["classes"], answer["probabilities"], strict=True)
        for i, (label, probabilities) in enumerate(pairs):
            typer.echo(f"{i}\t{label}\t{max(probabilities):.4f}")  # tab-separated, for cut and awk
    else:
        for row in answer.get("outputs") or answer["samples"]:
            typer.echo(json.dumps(row))


def register(cli: typer.Typer) -> None:
    cli.command()(predict)
