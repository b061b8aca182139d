"""Sweeps end to end with a real two-slot Celery worker, Redis and PostgreSQL: a small sweep runs to the end
with its best trial, never more than `parallel` trials queued or running (from the jobs' own times); ASHA
prunes a trial with a hopeless learning rate (its job ends `pruned`, checkpoint kept); cancel stops all."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings
from workers import sweep_study

REDIS_DB = 9
BASE = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [32]},
    "training": {"epochs": 2, "batch_size": 64, "device": "cpu"},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    from conftest import new_token, own_postgres_database, redis_database

    with own_postgres_database("nnforge_sweeps") as database_url:  # no other module's jobs to claim
        settings = Settings(
            database_url=database_url,
            redis_url=redis_database(REDIS_DB),
            nnforge_home=tmp_path_factory.mktemp("sweeps"),
            heartbeat_seconds=0.2,
            reconcile_seconds=1.0,
            worker_concurrency=2,
        )
        worker = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
        try:
            with TestClient(create_app(settings)) as client:
                client.headers["Authorization"] = f"Bearer {new_token(settings, 'sweeper')}"
                yield client, database_url
        finally:
            worker.stop()


def _sweep(client: TestClient, sweep_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/sweeps/{sweep_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _ended(client: TestClient, sweep_id: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for(
        lambda: (s := _sweep(client, sweep_id))["status"] != "running" and s,
        timeout=timeout,
        interval=0.5,
        what=f"sweep {sweep_id} to end",
    )


def _jobs(client: TestClient, sweep_id: str) -> list[dict[str, Any]]:
    return client.get("/v1/jobs", params={"sweep_id": sweep_id, "limit": 200}).json()["items"]  # type: ignore[no-any-return]


def _most_at_once(jobs: list[dict[str, Any]]) -> int:
    """The most trial jobs queued or running at one time, from each job's creation and finish."""
    events = []
    for job in jobs:
        events += [
            (datetime.fromisoformat(job["created_at"]), 1),
            (datetime.fromisoformat(job["finished_at"]), -1),
        ]
    at_once = most = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):  # a finish before a start at the same time
        at_once += change
        most = max(most, at_once)
    return most


def test_sweep_runs_its_trials_to_the_best_without_exceeding_parallel(stack: tuple[TestClient, str]) -> None:
    client, database_url = stack
    body = {
        "name": "digits-search",
        "base": BASE,
        "space": {
            "optimizer.lr": {"low": 1e-3, "high": 0.05, "log": True},
            "model.activation": {"choices": ["relu", "tanh"]},
        },
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "trials": 4,
        "parallel": 2,
        "sampler": "random",
    }
    submitted = client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "sweep-1"})
    assert submitted.status_code == 202, submitted.text
    sweep_id = submitted.json()["id"]
    assert submitted.headers["Location"] == f"/v1/sweeps/{sweep_id}"
    again = client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "sweep-1"})
    assert again.json()["id"] == sweep_id  # the same sweep; nothing new created
    assert [s["id"] for s in client.get("/v1/sweeps").json()["items"]].count(sweep_id) == 1

    sweep = _ended(client, sweep_id)
    assert sweep["status"] == "succeeded"
    assert sweep["counts"] == {
        "queued": 0,
        "running": 0,
        "complete": 4,
        "pruned": 0,
        "failed": 0,
        "cancelled": 0,
    }
    trials = client.get(f"/v1/sweeps/{sweep_id}/trials", params={"sort": "-value"}).json()["items"]
    assert sorted(t["number"] for t in trials) == list(range(4))
    assert [t["value"] for t in trials] == sorted((t["value"] for t in trials), reverse=True)
    best = sweep["best"]
    assert (best["number"], best["value"], best["params"]) == (
        trials[0]["number"],
        trials[0]["value"],
        trials[0]["params"],
    )
    assert all(t["epochs_run"] == 2 and set(t["params"]) == set(body["space"]) for t in trials)

    jobs = _jobs(client, sweep_id)
    assert sorted(j["trial_number"] for j in jobs) == list(range(4)) and {j["sweep_id"] for j in jobs} == {
        sweep_id
    }
    winner = next(j for j in jobs if j["id"] == best["job_id"])
    assert (
        sweep["best_spec"] == winner["spec"]
        and winner["spec"]["optimizer"]["lr"] == best["params"]["optimizer.lr"]
    )
    assert _most_at_once(jobs) == 2  # parallel used, never exceeded

    study = optuna.load_study(
        study_name=sweep_study.study_name(sweep_id), storage=sweep_study.storage_for(database_url)
    )
    assert sorted((t.number, t.value) for t in study.trials) == sorted(
        (t["number"], t["value"]) for t in trials
    )


def test_asha_prunes_a_hopeless_learning_rate(stack: tuple[TestClient, str]) -> None:
    client, database_url = stack
    body = {
        "base": {**BASE, "optimizer": {"name": "sgd"}, "training": {**BASE["training"], "epochs": 4}},
        "space": {
            "optimizer.lr": {"choices": [0.2, 1e-5]},
            "model.activation": {"choices": ["relu", "tanh"]},
        },
        "trials": 4,
        "parallel": 1,
        "sampler": "grid",
        "pruner": "asha",
    }
    submitted = client.post("/v1/sweeps", json=body)
    assert submitted.status_code == 202, submitted.text
    sweep_id = submitted.json()["id"]
    sweep = _ended(client, sweep_id)
    assert sweep["objective"] == {"metric": "val_accuracy", "direction": "maximize"}  # the base's default
    trials = client.get(f"/v1/sweeps/{sweep_id}/trials").json()["items"]
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert all(t["epochs_run"] < 4 for t in pruned)
    first_good = min(t["number"] for t in trials if t["params"]["optimizer.lr"] == 0.2)
    hopeless = [t for t in trials if t["params"]["optimizer.lr"] == 1e-5 and t["number"] > first_good]
    assert hopeless and all(t["state"] == "pruned" for t in hopeless), trials  # below the best at epoch 1
    assert sweep["best"]["params"]["optimizer.lr"] == 0.2
    job = client.get(f"/v1/jobs/{pruned[0]['job_id']}").json()
    assert job["status"] == "pruned" and job["error"] is None
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints").json()  # it keeps its checkpoints
    study = optuna.load_study(
        study_name=sweep_study.study_name(sweep_id), storage=sweep_study.storage_for(database_url)
    )
    states = {t.number: t.state for t in study.trials}
    assert all(states[t["number"]] == optuna.trial.TrialState.PRUNED for t in pruned)


def test_cancel_stops_queued_and_running_trials(stack: tuple[TestClient, str]) -> None:
    client, _ = stack
    body = {
        "base": {**BASE, "training": {**BASE["training"], "epochs": 500}},
        "space": {"optimizer.lr": {"low": 1e-3, "high": 0.01}},
        "trials": 6,
        "parallel": 2,
    }
    sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
    wait_for(lambda: _sweep(client, sweep_id)["counts"]["running"] >= 1, timeout=60, what="a running trial")
    cancelled = client.post(f"/v1/sweeps/{sweep_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    sweep = wait_for(
        lambda: (s := _sweep(client, sweep_id))["counts"]["cancelled"] == 2 and s,
        timeout=60,
        what="trials to stop",
    )
    assert sweep["finished_at"] is not None and sum(sweep["counts"].values()) == 2
    assert client.post(f"/v1/sweeps/{sweep_id}/cancel").status_code == 409
    assert len(_jobs(client, sweep_id)) == 2  # no trial queued after the cancel
