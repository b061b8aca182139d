"""A sweep survives its worker's SIGKILL mid-trial (the trial's job is taken back and resumed into the same
Optuna trial), a Redis restart (the messages lost with it are sent again) and an API restart (the driver lives
in the workers: the sweep goes on with no API at all). Each time every trial number runs once, none is lost,
and Optuna holds exactly the sweep's trials. The API that took the sweep never mapped torch: its corners'
dry runs ran in bounded children."""

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import optuna
from fastapi.testclient import TestClient
from jobs import session_factory
from services import PrivateRedis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support import ROOT, WorkerProcess, free_port, service_env, wait_for

from app.api.main import create_app
from app.client.serve import api_command, stop_group
from app.core.settings import Settings
from app.db.job_state import TERMINAL
from app.db.tables import Job
from workers import sweep_study

SWEEP = {
    "base": {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [64]},
        "training": {"epochs": 8, "batch_size": 32, "device": "cpu", "checkpoint": {"every_epochs": 1}},
    },
    "space": {"optimizer.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    "trials": 3,
    "parallel": 1,
    "pruner": "median",  # so the killed trial reports every epoch, before and after its resume
}


def test_sigkill_of_the_worker_mid_sweep_loses_no_trial(fault_settings: Settings, tmp_path: Path) -> None:
    with TestClient(create_app(fault_settings)) as client:
        sweep_id = client.post("/v1/sweeps", json=SWEEP).json()["id"]
        worker = WorkerProcess(fault_settings, tmp_path / "worker-1.log")

        def first_trial_at_epoch_2() -> bool:
            jobs = client.get("/v1/jobs", params={"sweep_id": sweep_id}).json()["items"]
            return bool(jobs) and jobs[-1]["progress"]["epoch"] >= 2

        wait_for(first_trial_at_epoch_2, timeout=120, interval=0.1, what="trial 0 at epoch 2")
        os.killpg(worker.process.pid, signal.SIGKILL)  # the Celery main process, its pool and the trainer
        worker.process.wait()
        last = WorkerProcess(fault_settings, tmp_path / "worker-2.log")
        try:
            sweep = wait_for(
                lambda: (s := client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "running" and s,
                timeout=240,
                interval=0.5,
                what="the sweep to end",
            )
        finally:
            last.stop()
        jobs = client.get("/v1/jobs", params={"sweep_id": sweep_id}).json()["items"]
    counts = sweep["counts"]
    assert sweep["status"] == "succeeded" and counts["complete"] + counts["pruned"] == 3, sweep
    assert sorted(job["trial_number"] for job in jobs) == [0, 1, 2]  # each trial once
    killed = next(job for job in jobs if job["trial_number"] == 0)
    assert killed["attempt"] == 2  # resumed, not replaced by a new trial
    study = optuna.load_study(
        study_name=sweep_study.study_name(sweep_id),
        storage=sweep_study.storage_for(fault_settings.resolved_database_url),
    )
    trial = next(t for t in study.trials if t.number == 0)
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == list(range(1, 9))  # one trial, every epoch, once
    assert trial.value == killed["best_metrics"]["val_accuracy"]


# Four short trials one at a time, so a restart lands between a trial and the ones still to be queued.
SMALL = {
    "base": {
        "dataset": {"name": "moons"},
        "model": {"arch": "mlp", "hidden_sizes": [8]},
        "training": {"epochs": 3, "batch_size": 16, "device": "cpu"},
    },
    "space": {"optimizer.lr": {"low": 1e-3, "high": 1e-1, "log": True}},
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 4,
    "parallel": 1,
    "sampler": "random",
}


def _trial_jobs(factory: sessionmaker[Session], sweep_id: str) -> list[Job]:
    """The sweep's trial jobs, straight from the database (no API needed)."""
    with factory() as session:
        return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial_number)))


def _through_a_running_trial(factory: sessionmaker[Session], sweep_id: str) -> tuple[int, str]:
    """Waits for a trial to train; returns its number and job id."""
    job = wait_for(
        lambda: next((j for j in _trial_jobs(factory, sweep_id) if j.status == "running"), None),
        timeout=120,
        interval=0.05,
        what="a trial to train",
    )
    return job.trial_number or 0, job.id


def _ended(factory: sessionmaker[Session], job_id: str) -> bool:
    with factory() as session:
        return session.get_one(Job, job_id).status in TERMINAL


def _assert_every_trial_ran_once(sweep: dict[str, Any], settings: Settings) -> None:
    assert sweep["status"] == "succeeded" and sweep["counts"]["complete"] == 4, sweep
    jobs = _trial_jobs(session_factory(settings), sweep["id"])
    assert [job.trial_number for job in jobs] == [0, 1, 2, 3]  # none lost, none twice, contiguous
    assert all(job.status == "succeeded" for job in jobs)
    study = optuna.load_study(
        study_name=sweep_study.study_name(sweep["id"]),
        storage=sweep_study.storage_for(settings.resolved_database_url),
    )
    assert sorted((t.number, t.state, t.value) for t in study.trials) == [
        (job.trial_number, optuna.trial.TrialState.COMPLETE, job.best_metrics["val_accuracy"]) for job in jobs
    ]


def test_redis_restart_mid_sweep_loses_no_trial(
    fault_settings: Settings, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    factory = session_factory(fault_settings)
    with TestClient(create_app(fault_settings)) as client:
        worker = WorkerProcess(fault_settings, tmp_path / "worker.log")
        try:
            submitted = client.post("/v1/sweeps", json=SMALL)
            assert submitted.status_code == 202, submitted.text
            sweep_id = submitted.json()["id"]
            number, job_id = _through_a_running_trial(factory, sweep_id)
            private_redis.kill()  # the running trial's message, and the driver's for its next, are lost
            wait_for(lambda: _ended(factory, job_id), timeout=60, what=f"trial {number} to end")
            private_redis.start()  # empty: nothing was persisted
            sweep = wait_for(
                lambda: (s := client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "running" and s,
                timeout=120,
                interval=0.5,
                what="the sweep to end",
            )
        finally:
            worker.stop()
    _assert_every_trial_ran_once(sweep, fault_settings)


@contextmanager
def _api_process(settings: Settings, log_path: Path) -> Iterator[tuple[str, int]]:
    """A real API server (`nnforge api`) on a free port: its URL and its server process's pid."""
    port = free_port()
    with log_path.open("wb") as log:
        api = subprocess.Popen(
            api_command(settings.model_copy(update={"host": "127.0.0.1", "port": port})),
            cwd=ROOT,
            env=service_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert api.poll() is None, log_path.read_text()
        try:
            return httpx2.get(f"{url}/livez", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    try:
        wait_for(ready, timeout=60, what="the API to listen")
        match = re.search(r"Started server process \[(\d+)\]", log_path.read_text())
        assert match, log_path.read_text()
        yield url, int(match.group(1))
    finally:
        stop_group(api)


def test_api_restart_mid_sweep_changes_nothing(fault_settings: Settings, tmp_path: Path) -> None:
    factory = session_factory(fault_settings)
    worker = WorkerProcess(fault_settings, tmp_path / "worker.log")
    try:
        with _api_process(fault_settings, tmp_path / "api-1.log") as (url, pid):
            submitted = httpx2.post(f"{url}/v1/sweeps", json=SMALL, timeout=60)
            assert submitted.status_code == 202, submitted.text
            sweep_id = submitted.json()["id"]
            # Every corner was dry-run in a bounded child: torch was never mapped into the API process.
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "libtorch" not in maps and "/torch/lib/" not in maps
            number, _ = _through_a_running_trial(factory, sweep_id)
            os.killpg(os.getpgid(pid), signal.SIGKILL)  # the API dies mid-sweep, without a word
        # With no API at all, the workers end that trial and queue the next.
        wait_for(
            lambda: len(_trial_jobs(factory, sweep_id)) >= min(number + 2, 4),
            timeout=60,
            what=f"trial {number + 1} queued with the API down",
        )
        with _api_process(fault_settings, tmp_path / "api-2.log") as (url, _):
            sweep = wait_for(
                lambda: (s := httpx2.get(f"{url}/v1/sweeps/{sweep_id}").json())["status"] != "running" and s,
                timeout=120,
                interval=0.5,
                what="the sweep to end",
            )
    finally:
        worker.stop()
    _assert_every_trial_ran_once(sweep, fault_settings)
