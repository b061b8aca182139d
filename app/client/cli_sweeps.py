"""`nnforge sweep submit|list|status|trials|cancel`: a search over a job spec, one job per trial, run by the
service. Exit codes as `nnforge submit` has them: 0 ok (a followed sweep succeeded), 1 the sweep failed or
was cancelled, 2 bad input (the file, an argument, a 4xx), 3 the service could not be reached or answered
5xx; 130 when following is stopped with Ctrl-C (the sweep goes on)."""

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from app.client.cli_jobs import (
    Output,
    OutputOpt,
    SetOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    out,
    remote,
)
from app.client.cli_render import print_issues, print_json
from app.client.sweeps import Sweep

SweepArg = Annotated[str, typer.Argument(help="the sweep id (nnforge sweep list)")]
POLL_SECONDS = 1.0
LIVE_ROWS = 20  # the follow table's newest trials; `nnforge sweep trials ID` lists them all
PARAM_WIDTH = 40  # a parameter's value in a table cell: a whole sub-spec is cut short
JOB_ID_SHOWN = 8  # a job id's prefix, which every job command takes
STATE_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "complete": "green",
    "succeeded": "green",
    "pruned": "blue",
    "failed": "red",
    "cancelled": "magenta",
}
COUNTED = ("complete", "pruned", "running", "queued", "failed", "cancelled")


def sweep_exit_code(status: str) -> int:
    return 1 if status in ("failed", "cancelled") else 0


def value_text(value: Any) -> str:
    """A trial's objective: numbers to four significant digits; "NaN" and "Infinity" arrive as text."""
    return "" if value is None else f"{float(value):.4g}"


def param_text(value: Any) -> str:
    """A parameter as a cell shows it: a float to four significant digits, anything else as JSON (lists and
    sub-specs too), cut at PARAM_WIDTH characters (`-o json` has every value whole)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= PARAM_WIDTH else text[: PARAM_WIDTH - 1] + "…"


def styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def summary(sweep: dict[str, Any]) -> Text:
    """One line: id, name, status, trials by state, the best so far."""
    counts = sweep.get("counts") or {}
    started = sum(counts.values())
    parts = ", ".join(f"{counts[state]} {state}" for state in COUNTED if counts.get(state))
    line = Text.assemble(
        f"sweep {sweep['id']} {sweep.get('name') or ''}  ",
        styled(sweep["status"]),
        f"  trials {started}/{sweep['trials']}" + (f": {parts}" if parts else ""),
    )
    best, objective = sweep.get("best"), sweep["objective"]
    if best is not None:
        line.append(f"  best {objective['metric']} {value_text(best['value'])} (trial {best['number']})")
    return line


def trials_table(trials: list[dict[str, Any]], best_number: int | None = None) -> Table:
    """A row per trial: number, state, objective, epochs, one column per searched parameter, its job (an id
    prefix). The best trial's number is starred."""
    paths = list(dict.fromkeys(path for trial in trials for path in trial["params"]))
    table = Table("trial", "state", "value", "epochs", *paths, "job", box=None, header_style="bold")
    for trial in trials:
        star = "*" if trial["number"] == best_number else ""
        table.add_row(
            f"{trial['number']}{star}",
            styled(trial["state"]),
            value_text(trial["value"]),
            str(trial.get("epochs_run") or 0),
            *(param_text(trial["params"][p]) if p in trial["params"] else "" for p in paths),
            (trial.get("job_id") or "")[:JOB_ID_SHOWN],
        )
    return table


def sweeps_table(sweeps: list[dict[str, Any]]) -> Table:
    table = Table("id", "name", "status", "trials", "best", "created", box=None, header_style="bold")
    for sweep in sweeps:
        counts, best = sweep.get("counts") or {}, sweep.get("best")
        done = sum(counts.get(state, 0) for state in ("complete", "pruned", "failed", "cancelled"))
        table.add_row(
            sweep["id"],
            sweep.get("name") or "",
            styled(sweep["status"]),
            f"{done}/{sweep['trials']}",
            f"{sweep['objective']['metric']} {value_text(best['value'])}" if best else "",
            str(sweep.get("created_at", ""))[:19],
        )
    return table


def print_sweep(console: Console, sweep: dict[str, Any]) -> None:
    console.print(summary(sweep), highlight=False)
    objective = sweep["objective"]
    console.print(f"  objective: {objective['direction']} {objective['metric']}", highlight=False)
    console.print(
        f"  {sweep['spec'].get('sampler', '')} sampler, {sweep['spec'].get('pruner', '')} pruner, "
        f"{sweep['parallel']} at a time",
        highlight=False,
    )
    best = sweep.get("best")
    if best is not None:
        console.print(f"  best trial {best['number']}: job {best['job_id']}", highlight=False)
        for path, value in best["params"].items():
            console.print(f"    {path}: {json.dumps(value)}", highlight=False, markup=False)


class SweepFollower:
    """Shows a sweep until it ends: a live table of its newest trials under a line with the counts and the
    best so far, and a printed line as each trial ends (what remains in a log off a terminal)."""

    def __init__(self, console: Console, poll_seconds: float = POLL_SECONDS) -> None:
        self.console, self.poll_seconds = console, poll_seconds
        self.ended: set[int] = set()

    def view(self, sweep: dict[str, Any], trials: list[dict[str, Any]]) -> Group:
        best = sweep.get("best")
        shown = trials[-LIVE_ROWS:]
        table = trials_table(shown, best["number"] if best else None)
        hidden = len(trials) - len(shown)
        if hidden:
            table.caption = f"{hidden} earlier trials: nnforge sweep trials {sweep['id']}"
        return Group(summary(sweep), table)

    def report_ended(self, sweep: dict[str, Any], trials: list[dict[str, Any]]) -> None:
        metric = sweep["objective"]["metric"]
        for trial in trials:
            if trial["state"] in ("queued", "running") or trial["number"] in self.ended:
                continue
            self.ended.add(trial["number"])
            value = f"  {metric} {value_text(trial['value'])}" if trial["value"] is not None else ""
            run = trial.get("epochs_run") or 0
            epochs = f" after {run} epoch{'' if run == 1 else 's'}" if trial["state"] == "pruned" else ""
            self.console.print(
                Text.assemble(f"trial {trial['number']} ", styled(trial["state"]), f"{epochs}{value}"),
                highlight=False,
            )

    def follow(self, sweep: Sweep) -> dict[str, Any]:
        """Poll the sweep and its trials until it ends; returns its final state."""
        with Live(console=self.console, refresh_per_second=4) as live:
            while True:
                # Trials are read after the sweep: a sweep seen ended has every trial ended in that read.
                data = sweep.refresh().data
                trials = sweep.trials()
                self.report_ended(data, trials)
                live.update(self.view(data, trials))
                if sweep.done:
                    return data
                time.sleep(self.poll_seconds)


def submit(
    sweep_file: Annotated[Path, typer.Argument(help="sweep, YAML or JSON (`nnforge template --sweep`)")],
    set_: SetOpt = None,
    name: Annotated[str | None, typer.Option(help="a name to recognise the sweep by")] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="show the trials live until the sweep ends")
    ] = True,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Start a sweep and follow it (a live table of trials, the best so far) until it ends; the exit code is
    0 only when it succeeds. --set base.training.epochs=2 overrides a field of the file."""
    from app.client.spec_files import apply_overrides, read_spec_file
    from models.errors import SpecError

    try:
        body = apply_overrides(read_spec_file(sweep_file), set_ or [])
    except SpecError as error:
        print_issues(console, [vars(issue) for issue in error.issues], sweep_file)
        raise typer.Exit(code=2) from None
    with remote(sweep_file):
        sweep = client(url, token).sweep(body, name=name)
        if output is Output.text:
            console.print(f"submitted sweep [bold]{sweep.id}[/bold] ({sweep.data['trials']} trials)")
        if not follow:
            if output is Output.json:
                print_json(sweep.data)
            else:
                out.print(sweep.id)
            return
        try:
            final = SweepFollower(console).follow(sweep) if output is Output.text else sweep.wait().data
        except KeyboardInterrupt:
            console.print(
                f"stopped following; the sweep goes on: nnforge sweep status {sweep.id} | "
                f"nnforge sweep cancel {sweep.id}"
            )
            raise typer.Exit(code=130) from None
    if output is Output.json:
        print_json(final)
    else:
        print_sweep(console, final)
    raise typer.Exit(code=sweep_exit_code(final["status"]))


def list_sweeps(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Your sweeps, newest first."""
    with remote():
        sweeps = [sweep.data for sweep in client(url, token).sweeps(limit=limit)]
    if output is Output.json:
        print_json(sweeps)
    else:
        out.print(sweeps_table(sweeps))


def status(
    sweep_id: SweepArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.text
) -> None:
    """A sweep's status, trials by state and best trial; exit code 1 when it failed or was cancelled."""
    with remote():
        sweep = client(url, token).get_sweep(sweep_id).data
    if output is Output.json:
        print_json(sweep)
    else:
        print_sweep(out, sweep)
    raise typer.Exit(code=sweep_exit_code(sweep["status"]))


def trials(
    sweep_id: SweepArg,
    sort: Annotated[str, typer.Option(help="number, value or -value (highest first)")] = "number",
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Every trial: its state, objective, epochs, parameters and job (the best starred)."""
    if sort not in ("number", "value", "-value"):
        console.print(f"[red]error[/red] --sort: {sort!r} is not one of number, value, -value")
        raise typer.Exit(code=2)
    with remote():
        sweep = client(url, token).get_sweep(sweep_id)
        items = sweep.trials(sort=sort)  # type: ignore[arg-type]
    if output is Output.json:
        print_json(items)
        return
    best = sweep.data.get("best")
    out.print(trials_table(items, best["number"] if best else None))


def cancel(
    sweep_id: SweepArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.text
) -> None:
    """Cancel a sweep: no new trials; queued ones end at once, running ones within a step."""
    with remote():
        sweep = client(url, token).get_sweep(sweep_id).cancel().data
    if output is Output.json:
        print_json(sweep)
    else:
        print_sweep(out, sweep)


def register(cli: typer.Typer) -> None:
    """Add `nnforge sweep …` to the command line."""
    sweeps = typer.Typer(help="Search a job spec's hyperparameters: one job per trial.", no_args_is_help=True)
    sweeps.command()(submit)
    sweeps.command("list")(list_sweeps)
    sweeps.command()(status)
    sweeps.command()(trials)
    sweeps.command()(cancel)
    cli.add_typer(sweeps, name="sweep")
