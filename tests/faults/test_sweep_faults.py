"""A sweep survives its worker's SIGKILL mid-trial: the trial's job is taken back and resumed (into the same
Optuna trial), the driver goes on from the database, and every trial number runs once."""

import os
import signal
from pathlib import Path

import optuna
from fastapi.testclient import TestClient
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings
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
