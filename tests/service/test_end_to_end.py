"""End to end through real processes: API → Redis → Celery worker → training process → PostgreSQL."""

import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings
from app.db.engine import make_engine
from app.db.tables import Job
from models.checkpoint import load_model
from models.datasets import builtin_dataset
from models.splits import split_indices

JOB_TIMEOUT = 240


@pytest.fixture(scope="module")
def e2e_settings(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from conftest import redis_database

    return Settings(
        database_url=postgres_url,
        redis_url=redis_database(11),
        nnforge_home=tmp_path_factory.mktemp("e2e"),
        heartbeat_seconds=0.2,
    )


@pytest.fixture(scope="module")
def worker(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(e2e_settings, tmp_path_factory.mktemp("logs") / "worker.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api(e2e_settings: Settings, worker: WorkerProcess) -> Iterator[TestClient]:
    from conftest import new_token

    with TestClient(create_app(e2e_settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(e2e_settings, 'e2e')}"
        yield client


def _finished(api: TestClient, job_id: str, worker: WorkerProcess) -> dict:
    def done() -> dict | None:
        job = api.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    try:
        return wait_for(done, timeout=JOB_TIMEOUT, interval=0.5, what=f"job {job_id}")
    except AssertionError:
        raise AssertionError(worker.log_path.read_text()[-4000:]) from None


def test_mlp_on_digits_end_to_end_reproduces_its_reported_accuracy(
    api: TestClient, worker: WorkerProcess, tmp_path: Path
) -> None:
    spec = {
        "name": "digits-mlp",
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [64]},
        "optimizer": {"name": "adam", "lr": 0.003},
        "training": {"epochs": 6, "seed": 4},
    }
    job = _finished(api, api.post("/v1/jobs", json=spec).json()["id"], worker)
    assert job["status"] == "succeeded", job["error"]
    assert (job["attempt"], job["progress"]["epoch"], job["progress"]["fraction"]) == (1, 6, 1.0)

    metrics = api.get(f"/v1/jobs/{job['id']}/metrics").json()["series"]
    assert [p["epoch"] for p in metrics["val_accuracy"]] == [1, 2, 3, 4, 5, 6]
    steps = [p["step"] for p in metrics["loss"]]
    assert steps == list(range(1, job["progress"]["total_steps"] + 1))  # every step once, none twice

    checkpoints = api.get(f"/v1/jobs/{job['id']}/checkpoints").json()
    # A short job keeps its last checkpoint and, when it peaked earlier, its best epoch's weights.
    assert checkpoints[-1]["epoch"] == 6 and len(checkpoints) <= 2
    download = api.get(f"/v1/jobs/{job['id']}/checkpoints/latest")
    assert download.status_code == 200
    assert int(download.headers["content-length"]) == checkpoints[-1]["size"]
    assert download.headers["etag"].startswith(f'"{checkpoints[-1]["sha256"]}')
    assert "attachment" in download.headers["content-disposition"]
    assert (
        api.get(
            f"/v1/jobs/{job['id']}/checkpoints/latest", headers={"If-None-Match": download.headers["etag"]}
        ).status_code
        == 304
    )
    path = tmp_path / "digits.pt"
    path.write_bytes(download.content)
    torch.load(path, weights_only=True)

    model = load_model(path)
    raw = builtin_dataset("digits")
    test = split_indices(len(raw.x), 0.1, 0.2, 4)["test"]
    with torch.no_grad():
        accuracy = float(np.mean(model(torch.tensor(raw.x[test])).argmax(1).numpy() == raw.y[test]))
    assert accuracy == job["latest_metrics"]["test_accuracy"]
    assert accuracy > 0.85

    weights = api.get(f"/v1/jobs/{job['id']}/checkpoints/best", params={"format": "safetensors"})
    from safetensors.torch import load

    assert torch.equal(load(weights.content)["model.layers.0.weight"], model.network.layers[0].weight)


def test_the_objective_picks_the_best_checkpoint_and_its_test_score(
    api: TestClient, worker: WorkerProcess, tmp_path: Path
) -> None:
    spec = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [16]},
        "optimizer": {"name": "sgd", "lr": 0.5},
        "training": {"epochs": 10, "seed": 3, "checkpoint_every": 100},
    }
    job = _finished(api, api.post("/v1/jobs", json=spec).json()["id"], worker)
    assert job["status"] == "succeeded", job["error"]
    assert job["objective"] == {"metric": "val_accuracy", "mode": "max"}  # the default for a classifier
    series = api.get(f"/v1/jobs/{job['id']}/metrics", params={"name": "val_accuracy"}).json()["series"]
    values = [p["value"] for p in series["val_accuracy"]]
    assert job["best_epoch"] == values.index(max(values)) + 1
    assert job["best_epoch"] < 10  # so `best` is not the last epoch's checkpoint, which is not due then
    assert job["best_metrics"]["val_accuracy"] == max(values)

    best = api.get(f"/v1/jobs/{job['id']}/checkpoints/best")
    path = tmp_path / "best.pt"
    path.write_bytes(best.content)
    assert torch.load(path, weights_only=True)["progress"]["epoch"] == job["best_epoch"]
    raw = builtin_dataset("digits")
    test = split_indices(len(raw.x), 0.1, 0.2, 3)["test"]
    with torch.no_grad():
        predicted = load_model(path)(torch.tensor(raw.x[test])).argmax(1).numpy()
    assert float(np.mean(predicted == raw.y[test])) == job["best_test_metrics"]["test_accuracy"]
    assert set(job["latest_metrics"]) >= {"test_loss", "test_accuracy"}  # and the last epoch's


def test_an_objective_the_run_never_reports_is_refused_at_post(api: TestClient) -> None:
    spec = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp"},
        "training": {"early_stopping": {"metric": "val_f1"}},
    }
    response = api.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    issue = response.json()["errors"][0]
    assert issue["field"] == "training.early_stopping.metric" and issue["value"] == "val_f1"
    assert "val_accuracy" in issue["reason"]


@pytest.mark.parametrize(
    "spec",
    [
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "cnn", "conv_blocks": [{"channels": 8}]},
            "training": {"epochs": 2},
        },
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "rnn", "cell": "rnn", "hidden_size": 32},
            "training": {"epochs": 2},
        },
        {
            "dataset": {"name": "sine"},
            "model": {"arch": "rnn", "cell": "lstm", "hidden_size": 16},
            "training": {"epochs": 2},
        },
        {"dataset": {"name": "gaussian-ring"}, "model": {"arch": "gan"}, "training": {"epochs": 2}},
    ],
    ids=["cnn", "rnn", "lstm-sine", "gan"],
)
def test_each_architecture_trains_end_to_end(api: TestClient, worker: WorkerProcess, spec: dict) -> None:
    job = _finished(api, api.post("/v1/jobs", json=spec).json()["id"], worker)
    assert job["status"] == "succeeded", job["error"]
    assert all(math.isfinite(v) for v in job["latest_metrics"].values())
    assert any(k.startswith("test_") for k in job["latest_metrics"])
    checkpoints = api.get(f"/v1/jobs/{job['id']}/checkpoints").json()
    assert checkpoints[-1]["epoch"] == 2 and checkpoints[-1]["resumable"]
    # the last and, when epoch 1 was the best, epoch 1's weights (the default policy: every 30 s, keep_best 1)
    best_first = job["best_epoch"] == 1
    assert [c["epoch"] for c in checkpoints] == ([1, 2] if best_first else [2])


def test_gan_job_exposes_its_latest_samples_and_epoch_timing(
    api: TestClient, worker: WorkerProcess, e2e_settings: Settings
) -> None:
    from conftest import new_token

    gan = {
        "dataset": {"name": "gaussian-ring"},
        "model": {
            "arch": "gan",
            "generator": {"hidden_sizes": [16]},
            "discriminator": {"hidden_sizes": [16]},
        },
        "training": {"epochs": 2, "batch_size": 256},
    }
    job = _finished(api, api.post("/v1/jobs", json=gan).json()["id"], worker)
    assert job["status"] == "succeeded", job["error"]
    response = api.get(f"/v1/jobs/{job['id']}/samples")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["epoch"], body["kind"], body["shape"]) == (2, "points", [2])
    samples, reference = np.asarray(body["samples"], float), np.asarray(body["reference"], float)
    assert samples.shape == (256, 2) and np.isfinite(samples).all()
    assert reference.shape == (512, 2)
    assert abs(np.linalg.norm(reference, axis=1).mean() - 2.0) < 0.05  # raw units: the ring's radius is 2

    other = {"Authorization": f"Bearer {new_token(e2e_settings, 'someone-else')}"}
    assert api.get(f"/v1/jobs/{job['id']}/samples", headers=other).status_code == 404
    mlp = {
        "dataset": {"name": "moons"},
        "model": {"arch": "mlp", "hidden_sizes": [4]},
        "training": {"epochs": 1},
    }
    supervised = _finished(api, api.post("/v1/jobs", json=mlp).json()["id"], worker)
    missing = api.get(f"/v1/jobs/{supervised['id']}/samples")
    assert missing.status_code == 404 and "no generated samples" in missing.json()["detail"]

    # The worker keeps the latest epoch's duration and throughput with the job, for /metrics.
    engine = make_engine(e2e_settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            timing = connection.execute(
                select(Job.epoch_seconds, Job.samples_per_second).where(Job.id == job["id"])
            ).one()
    finally:
        engine.dispose()
    assert timing.epoch_seconds > 0 and timing.samples_per_second > 0


def test_uploaded_dataset_trains_end_to_end(api: TestClient, worker: WorkerProcess) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)
    buffer = io.StringIO()
    buffer.write("a,b,c,d,target\n")
    for row, target in zip(x, y, strict=True):
        buffer.write(",".join(f"{v:.6f}" for v in row) + f",{target:.6f}\n")
    uploaded = api.post(
        "/v1/datasets",
        files={"file": ("linear.csv", buffer.getvalue().encode())},
        data={"label_column": "target"},
    ).json()
    assert uploaded["task"] == "regression"
    spec = {
        "dataset": {"id": uploaded["id"]},
        "model": {"arch": "mlp", "hidden_sizes": [16]},
        "optimizer": {"lr": 0.01},
        "training": {"epochs": 20},
    }
    job = _finished(api, api.post("/v1/jobs", json=spec).json()["id"], worker)
    assert job["status"] == "succeeded", job["error"]
    assert job["latest_metrics"]["test_mse"] < 0.1 * float(np.var(y))


def test_cancel_a_running_job_stops_it_with_a_checkpoint(api: TestClient, worker: WorkerProcess) -> None:
    spec = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [256, 256]},
        "training": {"epochs": 500, "batch_size": 8},
    }
    job_id = api.post("/v1/jobs", json=spec).json()["id"]
    wait_for(
        lambda: api.get(f"/v1/jobs/{job_id}").json()["progress"]["step"] > 0,
        timeout=JOB_TIMEOUT,
        what="the job to train",
    )
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    job = wait_for(
        lambda: (j := api.get(f"/v1/jobs/{job_id}").json())["status"] != "running" and j,
        timeout=30,
        what="the job to stop",
    )
    assert job["status"] == "cancelled"
    assert job["error"]["type"] == "cancelled"
    assert job["progress"]["epoch"] < 500
    checkpoints = api.get(f"/v1/jobs/{job_id}/checkpoints").json()
    assert checkpoints and checkpoints[-1]["step"] >= job["progress"]["step"] - 1
