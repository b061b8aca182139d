"""`nnforge evaluate JOB --kind report|robustness|attribution`: evaluate a job's checkpoint on a worker and
print what came out."""

from typing import Annotated, Any

import typer
from rich.table import Table

from app.client.cli_jobs import JobArg, Output, OutputOpt, TokenOpt, UrlOpt, client, out, remote
from app.client.cli_render import print_json
from app.client.evaluations import request_evaluation


def evaluate(
    job_id: JobArg,
    kind: Annotated[str, typer.Option("--kind", help="report, robustness or attribution")] = "report",
    checkpoint: Annotated[str, typer.Option(help="best, latest or a checkpoint id")] = "best",
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    epsilons: Annotated[
        str | None, typer.Option(help="robustness: ε values, comma-separated, in normalised input units")
    ] = None,
    attacks: Annotated[str | None, typer.Option(help="robustness: fgsm, pgd or fgsm,pgd")] = None,
    steps: Annotated[int | None, typer.Option(help="robustness: PGD steps")] = None,
    samples: Annotated[int | None, typer.Option(help="samples of the split to attack or attribute")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the result")] = True,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Evaluate a job's checkpoint: the report (confusion matrix, per-class figures, calibration), the
    robustness curve under FGSM and PGD, or saliency and integrated-gradient attributions."""
    params: dict[str, Any] = {}
    if epsilons is not None:
        params["epsilons"] = [_number(e) for e in epsilons.split(",")]
    if attacks is not None:
        params["attacks"] = attacks.split(",")
    params |= {k: v for k, v in (("steps", steps), ("samples", samples)) if v is not None}
    with remote():
        api = client(url, token)
        job = api.job(job_id)
        evaluation = request_evaluation(
            api, job.id, kind, checkpoint=checkpoint, split=split, params=params, wait=wait
        )
    if output is Output.json:
        print_json(evaluation)
    else:
        _print(evaluation)
    if evaluation["status"] == "failed":
        raise typer.Exit(code=1)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # the server's 422 names it


def _print(evaluation: dict[str, Any]) -> None:
    out.print(
        f"evaluation {evaluation['id']} ({evaluation['kind']}, checkpoint {evaluation['checkpoint_id']}, "
        f"{evaluation['split']} split): {evaluation['status']}",
        highlight=False,
    )
    result = evaluation.get("result")
    if evaluation.get("error"):
        out.print(evaluation["error"], highlight=False, markup=False)
    if not result:
        return
    if "points" in result:
        table = Table("attack", "ε", "accuracy", "attack success", box=None, header_style="bold")
        for p in result["points"]:
            success = p["attack_success_rate"]
            table.add_row(
                p["attack"],
                f"{p['epsilon']:g}",
                f"{p['accuracy']:.3f}",
                "–" if success is None else f"{success:.3f}",
            )
        out.print(table)
    elif "per_class" in result:
        out.print(f"accuracy {result['accuracy']:.4f}  ECE {result['ece']:.4f}  (15 bins)", highlight=False)
        table = Table("class", "precision", "recall", "F1", "support", box=None, header_style="bold")
        for row in result["per_class"]:
            table.add_row(
                str(row["class"]),
                f"{row['precision']:.3f}",
                f"{row['recall']:.3f}",
                f"{row['f1']:.3f}",
                str(row["support"]),
            )
        out.print(table)
    elif "items" in result:
        out.print(
            f"{result['samples']} samples attributed ({result['target']}, baseline {result['baseline']}); "
            f"integrated gradients complete within {result['delta_tolerance']} on "
            f"{result['fraction_delta_below_tolerance']:.0%} (max |δ| {result['max_abs_delta']:.2g})",
            highlight=False,
        )
    else:  # regression or a GAN: the figures as they are
        print_json(result)


def register(cli: typer.Typer) -> None:
    cli.command()(evaluate)
