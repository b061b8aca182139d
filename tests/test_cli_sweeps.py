"""`nnforge template --sweep` and the sweep commands' own parts that need no service: the tables, the
follower's lines, reading the file, and the exit codes of a bad file and of a service that is not there.
The commands run in this process (typer's runner: the same code as the console script, without a
subprocess's start-up); tests/service/test_sweep_cli.py runs them as a user does, against a real service."""

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import Result
from rich.console import Console
from support import free_port
from typer.testing import CliRunner

from app.client.cli import cli
from app.client.cli_sweeps import SweepFollower, param_text, summary, sweep_exit_code, trials_table
from app.client.sweeps import read_sweep
from models.specs import parse_job_spec

# The example of issue 13, as a user reads it in the README.
ISSUE_EXAMPLE = {
    "name": "digits-search",
    "base": {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp"},
        "training": {"epochs": 20, "batch_size": 64},
    },
    "space": {
        "optimizer.name": {"choices": ["sgd", "momentum", "rmsprop", "adam"]},
        "optimizer.lr": {"low": 1.0e-4, "high": 0.3, "log": True},
        "model.hidden_sizes": {"choices": [[64], [128, 64], [256, 128], [256, 128, 64]]},
        "model.activation": {"choices": ["relu", "tanh", "sigmoid"]},
        "model.dropout": {"low": 0.0, "high": 0.5},
    },
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 24,
    "parallel": 2,
    "sampler": "tpe",
    "seed": 0,
    "pruner": "asha",
}
SWEEP: dict[str, Any] = {
    "id": "5a5a5a5a-1111-2222-3333-444444444444",
    "name": "digits-search",
    "status": "running",
    "spec": ISSUE_EXAMPLE,
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 24,
    "parallel": 2,
    "counts": {"queued": 1, "running": 1, "complete": 2, "pruned": 1, "failed": 0, "cancelled": 0},
    "best": {"number": 1, "job_id": "j1", "value": 0.9712, "params": {"optimizer.lr": 0.01}},
    "best_spec": None,
    "created_at": "2026-11-30T09:00:00+00:00",
    "finished_at": None,
}


def _trial(number: int, state: str, value: float | None, **params: Any) -> dict[str, Any]:
    return {
        "number": number,
        "job_id": f"job-{number}",
        "params": params,
        "state": state,
        "value": value,
        "epochs_run": 3,
    }


def _nnforge(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"HOME": "/nonexistent", "NNFORGE_TOKEN": "nnf_x"})


def _said(result: Result) -> str:
    """What the command wrote to stderr, with rich's line wrapping undone."""
    return " ".join(result.stderr.split())


def _text(renderable: Any) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_template_sweep_prints_the_issue_example_with_its_comments() -> None:
    result = _nnforge("template", "--sweep")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == ISSUE_EXAMPLE
    assert "# tpe | random | grid" in result.stdout and "# none | median | asha" in result.stdout
    parse_job_spec(yaml.safe_load(result.stdout)["base"])  # the base is a valid job spec as it stands
    as_json = _nnforge("template", "--sweep", "-o", "json")
    assert json.loads(as_json.stdout) == ISSUE_EXAMPLE


def test_read_sweep_reads_a_file_or_takes_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(ISSUE_EXAMPLE))
    assert read_sweep(path) == ISSUE_EXAMPLE == read_sweep(str(path))
    assert read_sweep(ISSUE_EXAMPLE) == ISSUE_EXAMPLE and read_sweep(ISSUE_EXAMPLE) is not ISSUE_EXAMPLE


def test_trials_table_has_a_column_per_parameter_and_stars_the_best() -> None:
    trials = [
        _trial(0, "complete", 0.91, **{"optimizer.lr": 0.001}),
        _trial(1, "complete", 0.9712, **{"optimizer.lr": 0.01, "model.hidden_sizes": [128, 64]}),
        _trial(2, "pruned", None, **{"optimizer.lr": 0.2}),
    ]
    lines = _text(trials_table(trials, best_number=1)).splitlines()
    header = lines[0].split()
    assert header == ["trial", "state", "value", "epochs", "optimizer.lr", "model.hidden_sizes", "job"]
    assert lines[2].split() == ["1*", "complete", "0.9712", "3", "0.01", "[128,64]", "job-1"]
    assert lines[3].split() == ["2", "pruned", "3", "0.2", "job-2"]  # no value, no hidden size
    long_id = _trial(3, "running", None, **{"optimizer.lr": 0.0028951416647}) | {"job_id": "c003bff0-f6bf"}
    assert _text(trials_table([long_id])).splitlines()[1].split() == [
        "3",
        "running",
        "3",
        "0.002895",
        "c003bff0",
    ]


def test_param_text_cuts_a_whole_sub_spec_short() -> None:
    assert param_text("adam") == "adam" and param_text(0.5) == "0.5" and param_text(64) == "64"
    cut = param_text({"arch": "cnn", "conv_blocks": [{"channels": 16}, {"channels": 32}], "dropout": 0.1})
    assert len(cut) == 40 and cut.endswith("…") and cut.startswith('{"arch":"cnn"')


def test_summary_counts_trials_by_state_and_names_the_best() -> None:
    line = _text(summary(SWEEP))
    assert "running" in line and "trials 5/24: 2 complete, 1 pruned, 1 running, 1 queued" in line
    assert "best val_accuracy 0.9712 (trial 1)" in line
    assert "best" not in _text(summary(SWEEP | {"best": None}))


def test_follower_prints_each_ended_trial_once() -> None:
    console = Console(record=True, width=200, color_system=None)
    follower = SweepFollower(console)
    first = [_trial(0, "complete", 0.91), _trial(1, "running", None)]
    follower.report_ended(SWEEP, first)
    follower.report_ended(SWEEP, [first[0], _trial(1, "pruned", 0.42), _trial(2, "queued", None)])
    assert console.export_text().splitlines() == [
        "trial 0 complete  val_accuracy 0.91",
        "trial 1 pruned after 3 epochs  val_accuracy 0.42",
    ]


def test_sweep_exit_codes_follow_submit() -> None:
    assert [sweep_exit_code(s) for s in ("succeeded", "failed", "cancelled")] == [0, 1, 1]


def test_submit_points_at_the_line_of_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: x\nspace:\n  optimizer.lr: {low: 1\n")
    result = _nnforge("sweep", "submit", str(path), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "not valid YAML at line 4" in _said(result)
    bad_set = _nnforge("sweep", "submit", str(path), "--set", "trials")
    assert bad_set.exit_code == 2


def test_submit_exits_3_when_the_service_is_not_there(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(ISSUE_EXAMPLE))
    result = _nnforge("sweep", "submit", str(path), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 3
    assert "cannot reach the service" in _said(result)
