"""A diverging job through the real service, on PostgreSQL + Redis and on SQLite + the filesystem broker: it
fails as `diverged`, its non-finite metrics are stored and served, and it keeps its last finite checkpoint."""

import math
from collections.abc import Iterator

import pytest
import torch
from fastapi.testclient import TestClient
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.queue import ensure_broker_folders
from app.core.settings import Settings
from app.db.job_state import TERMINAL
from app.db.migrate import upgrade_to_head
from models.checkpoint import read_checkpoint

REDIS_DB = 14
# Momentum warming up to a learning rate of 10 over 8 epochs: a finite first epoch, then divergence (with a
# longer warm-up the ReLUs may all die first, and a dead network never diverges).
WARMING_UP = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [512, 512]},
    "optimizer": {"name": "momentum", "lr": 10, "warmup_steps": 184},
    "training": {"epochs": 20},
}


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, WorkerProcess]]:
    from conftest import new_token, redis_database

    home = tmp_path_factory.mktemp("divergence")
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        settings = Settings(database_url=url, redis_url=redis_database(REDIS_DB), nnforge_home=home)
    else:
        settings = Settings(nnforge_home=home)
        upgrade_to_head(settings.resolved_database_url)
        ensure_broker_folders(settings)
    settings = settings.model_copy(update={"heartbeat_seconds": 0.2})
    worker = WorkerProcess(settings, home / "worker.log")
    try:
        with TestClient(create_app(settings)) as client:
            client.headers["Authorization"] = f"Bearer {new_token(settings, 'diverging')}"
            yield client, worker
    finally:
        worker.stop()


def _finished(client: TestClient, job_id: str, worker: WorkerProcess) -> dict:
    try:
        return wait_for(
            lambda: (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in TERMINAL and job,
            timeout=240,
            interval=0.3,
            what=f"job {job_id}",
        )
    except AssertionError:
        raise AssertionError(worker.log_path.read_text()[-4000:]) from None


def test_a_diverging_job_fails_as_diverged_and_keeps_its_last_finite_checkpoint(
    api: tuple[TestClient, WorkerProcess],
) -> None:
    client, worker = api
    job = _finished(client, client.post("/v1/jobs", json=WARMING_UP).json()["id"], worker)
    assert job["status"] == "failed"
    assert job["error"]["type"] == "diverged", job["error"]
    assert "diverged: the training loss" in job["error"]["message"]

    series = client.get(f"/v1/jobs/{job['id']}/metrics", params={"name": "loss"}).json()["series"]["loss"]
    values = [float(p["value"]) for p in series]  # "NaN" and "Infinity" arrive as text
    first = values[0]
    assert any(not math.isfinite(v) or v > 20 * max(1.0, first) for v in values[-5:])
    assert f"step {series[-1]['step']}" in job["error"]["message"]

    checkpoints = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()
    assert checkpoints, "the best epoch before the divergence is kept"
    best = read_checkpoint(client.get(f"/v1/jobs/{job['id']}/checkpoints/best").content)
    assert all(torch.isfinite(t).all() for t in best["model"].values())
    assert best["progress"]["epoch"] == job["best_epoch"] < job["progress"]["epoch"] + 1


def test_a_job_with_a_nan_metric_reads_back_everywhere(api: tuple[TestClient, WorkerProcess]) -> None:
    """The first epochs of a diverging job hold no NaN; a job that goes NaN at once does: its metrics, status,
    list, events and CLI-facing JSON must all answer."""
    client, worker = api
    spec = WARMING_UP | {"optimizer": {"name": "momentum", "lr": 10}}
    job = _finished(client, client.post("/v1/jobs", json=spec).json()["id"], worker)
    assert job["error"]["type"] == "diverged"
    values = [p["value"] for p in client.get(f"/v1/jobs/{job['id']}/metrics").json()["series"]["loss"]]
    assert "NaN" in values or "Infinity" in values
    assert client.get("/v1/jobs").status_code == 200
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
        body = "".join(events.iter_text())
    assert "event: end" in body and ('"NaN"' in body or '"Infinity"' in body)
