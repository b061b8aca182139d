"""`nnforge sweep …` against a real API server and Celery worker: the template's sweep submitted and
followed to the end as a user runs it (a subprocess, off a terminal), then read back by every command and by
the Python client; a followed sweep cancelled (exit code 1); a space the service refuses (exit code 2). The
commands that only read run in this process (typer's runner: the same code without an interpreter's start)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import Result
from live_stack import LiveStack
from support import ROOT, wait_for
from typer.testing import CliRunner

from app.client.cli import cli
from app.client.client import Client
from models.specs import parse_job_spec

# The template's own sweep, small enough for the suite: two one-epoch trials on digits, one at a time.
SMALL = [
    "--set",
    "trials=2",
    "--set",
    "parallel=1",
    "--set",
    "base.training.epochs=1",
    "--set",
    "pruner=none",
]
# A sweep that would run for minutes: cancelled while its first trial trains.
LONG = {
    "name": "cli-cancelled",
    "base": {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [32]},
        "training": {"epochs": 200, "batch_size": 2},
    },
    "space": {"optimizer.lr": {"low": 0.001, "high": 0.01, "log": True}},
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 3,
    "parallel": 1,
}


def _env(stack: LiveStack) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "NNFORGE_URL": stack.url,
        "NNFORGE_TOKEN": stack.token,
        "HOME": "/nonexistent",
        "COLUMNS": "200",
    }


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from app.client.cli import main; main()", *args]


def _nnforge(stack: LiveStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), cwd=ROOT, env=_env(stack), capture_output=True, text=True, timeout=240
    )


def _read(stack: LiveStack, *args: str) -> Result:
    env = {"NNFORGE_URL": stack.url, "NNFORGE_TOKEN": stack.token, "HOME": "/nonexistent"}
    return CliRunner().invoke(cli, list(args), env=env)


def test_template_sweep_runs_to_the_end_and_reads_back(live_stack: LiveStack, tmp_path: Path) -> None:
    template = _read(live_stack, "template", "--sweep")
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(template.stdout)
    run = _nnforge(live_stack, "sweep", "submit", str(sweep_file), *SMALL)
    assert run.returncode == 0, run.stderr + live_stack.logs()
    sweep_id = re.search(r"submitted sweep (\S+) \(2 trials\)", run.stderr).group(1)
    assert re.search(r"^trial 0 complete  val_accuracy 0\.\d+$", run.stderr, re.MULTILINE), run.stderr
    assert re.search(r"^trial 1 complete  val_accuracy 0\.\d+$", run.stderr, re.MULTILINE), run.stderr
    assert f"sweep {sweep_id} digits-search  succeeded  trials 2/2: 2 complete" in run.stderr

    status = json.loads(_read(live_stack, "sweep", "status", sweep_id, "-o", "json").stdout)
    assert (status["status"], status["counts"]["complete"], status["trials"]) == ("succeeded", 2, 2)
    assert status["spec"]["space"] == yaml.safe_load(template.stdout)["space"]
    trials = json.loads(
        _read(live_stack, "sweep", "trials", sweep_id, "--sort", "-value", "-o", "json").stdout
    )
    assert [t["value"] for t in trials] == sorted((t["value"] for t in trials), reverse=True)
    assert (trials[0]["number"], trials[0]["value"]) == (status["best"]["number"], status["best"]["value"])
    assert set(trials[0]["params"]) == set(status["spec"]["space"])
    table = _read(live_stack, "sweep", "trials", sweep_id).stdout
    assert re.search(rf"^ *{status['best']['number']}\* ", table, re.MULTILINE), table  # the best, starred
    listed = json.loads(_read(live_stack, "sweep", "list", "-o", "json").stdout)
    assert sweep_id in [sweep["id"] for sweep in listed]
    assert _read(live_stack, "sweep", "status", sweep_id).exit_code == 0

    # The Python client sees the same sweep; each trial is a job that names its sweep and number.
    with Client(live_stack.url, live_stack.token) as client:
        sweep = client.get_sweep(sweep_id)
        assert sweep.best() == status["best"]
        best_spec = sweep.best_spec()
        assert best_spec is not None
        assert parse_job_spec(best_spec).optimizer.lr == status["best"]["params"]["optimizer.lr"]
        jobs = sweep.jobs()
        assert sorted((job.data["sweep_id"], job.data["trial_number"]) for job in jobs) == [
            (sweep_id, 0),
            (sweep_id, 1),
        ]
        assert {job.id for job in jobs} == {t["job_id"] for t in trials}


def test_followed_sweep_cancelled_exits_1(live_stack: LiveStack, tmp_path: Path) -> None:
    sweep_file = tmp_path / "long.yaml"
    sweep_file.write_text(yaml.safe_dump(LONG))
    follower = subprocess.Popen(
        _command("sweep", "submit", str(sweep_file)),
        cwd=ROOT,
        env=_env(live_stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stderr is not None
    first = follower.stderr.readline()
    sweep_id = re.search(r"submitted sweep (\S+)", first).group(1)
    with Client(live_stack.url, live_stack.token) as client:
        wait_for(
            lambda: client.get_sweep(sweep_id).data["counts"]["running"] == 1,
            timeout=60,
            what="a trial running",
        )
        cancelled = _read(live_stack, "sweep", "cancel", sweep_id, "-o", "json")
        assert cancelled.exit_code == 0, cancelled.output
        _, stderr = follower.communicate(timeout=120)
        assert follower.returncode == 1, stderr
        assert "cancelled" in stderr
        assert _read(live_stack, "sweep", "status", sweep_id).exit_code == 1
        assert {job.status for job in client.get_sweep(sweep_id).jobs()} == {"cancelled"}


def test_submit_refuses_a_space_path_the_spec_lacks(live_stack: LiveStack, tmp_path: Path) -> None:
    sweep_file = tmp_path / "bad.yaml"
    sweep_file.write_text(yaml.safe_dump(LONG | {"space": {"optimizer.lrr": {"low": 0.001, "high": 0.01}}}))
    run = _read(live_stack, "sweep", "submit", str(sweep_file))
    assert run.exit_code == 2, run.output
    assert "optimizer.lrr" in run.stderr and "submitted" not in run.stderr
