"""The HTTP API against a real PostgreSQL (and Redis as the broker; no worker runs here)."""

import io
import subprocess
import sys
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.api.main import create_app
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.tables import Metric

MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [8]},
    "training": {"epochs": 1},
}
PROBLEM = "application/problem+json"


def _submit(client: TestClient, body: dict | None = None) -> dict:
    response = client.post("/v1/jobs", json=body or MOONS)
    assert response.status_code == 202, response.text
    return response.json()


def test_submit_returns_202_location_and_the_queued_job(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={**MOONS, "name": "first"})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert (job["status"], job["name"], job["arch"], job["attempt"]) == ("queued", "first", "mlp", 0)
    assert job["num_parameters"] == 2 * 8 + 8 + 8 * 2 + 2
    assert job["progress"] == {"epoch": 0, "total_epochs": 1, "step": 0, "total_steps": 22, "fraction": 0.0}
    assert job["queue"] == "any" and job["queue_position"] >= 0
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]


def test_submit_takes_a_priority_and_shows_both_starts(client: TestClient) -> None:
    assert _submit(client)["priority"] == "normal"
    job = _submit(client, {**MOONS, "priority": "high"})
    assert (job["priority"], job["started_at"], job["attempt_started_at"]) == ("high", None, None)
    assert "priority" not in job["spec"]  # how the job is queued, not what it trains
    refused = client.post("/v1/jobs", json={**MOONS, "priority": "urgent"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "priority"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({**MOONS, "training": {"epochs": 100_000}}, "training.epochs", "less than or equal to 1000"),
        ({**MOONS, "optimizer": {"name": "sgd", "lr": -1}}, "optimizer.lr", "greater than 0"),
        ({**MOONS, "model": {"arch": "mlp", "hidden_sizes": "wide"}}, "model.hidden_sizes", "list"),
        ({**MOONS, "model": {"arch": "cnn"}}, "model.arch", "image samples"),
        ({**MOONS, "model": {"arch": "mlp", "hidden_sizes": [4096] * 4}}, "model", "over the limit"),
        ({**MOONS, "dataset": {"path": "/etc/passwd"}}, "dataset.path", "upload"),
        ({**MOONS, "dataset": {"id": "nope"}}, "dataset.id", "no uploaded dataset"),
        ({"model": {"arch": "mlp"}}, "dataset", "Field required"),
    ],
)
def test_submit_refuses_bad_specs_with_problem_details(
    client: TestClient, body: dict, field: str, words: str
) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    errors = response.json()["errors"]
    assert any(e["field"] == field and words in e["reason"] for e in errors), errors


def test_submit_refuses_a_non_json_body(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_read_unknown_job_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/v1/jobs/does-not-exist")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_list_is_newest_first_and_pages_with_a_cursor(client: TestClient) -> None:
    ids = [_submit(client, {**MOONS, "name": f"page-{i}"})["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "arch": "mlp"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in ids] == ids[::-1]
    assert len(seen) == len(set(seen))
    assert client.get("/v1/jobs", params={"arch": "gan"}).json()["items"] == []
    assert client.get("/v1/jobs", params={"cursor": "garbage!"}).status_code == 422


def test_cancel_a_queued_job_ends_it_and_a_second_cancel_conflicts(client: TestClient) -> None:
    job = _submit(client)
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]["type"] == "cancelled" and cancelled["finished_at"]
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert client.get("/v1/jobs", params={"status": "cancelled"}).json()["items"][0]["id"] == job["id"]


def test_metrics_downsampling_keeps_each_buckets_extremes(client: TestClient) -> None:
    job = _submit(client)
    values = np.sin(np.arange(1000) / 10.0)
    values[537] = 50.0  # a spike an average would hide
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        session.execute(
            insert(Metric),
            [
                {
                    "job_id": job["id"],
                    "name": "loss",
                    "step": s + 1,
                    "epoch": 1,
                    "value": float(v),
                    "time": utcnow(),
                }
                for s, v in enumerate(values)
            ],
        )
        session.commit()
    full = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert len(full["series"]["loss"]) == 1000 and not full["downsampled"]
    reduced = client.get(f"/v1/jobs/{job['id']}/metrics", params={"max_points": 100}).json()
    points = reduced["series"]["loss"]
    assert reduced["downsampled"] and len(points) <= 100
    assert max(p["value"] for p in points) == 50.0
    assert min(p["value"] for p in points) == pytest.approx(values.min())
    assert [p["step"] for p in points] == sorted(p["step"] for p in points)
    after = client.get(f"/v1/jobs/{job['id']}/metrics", params={"after_step": 990, "name": "loss"}).json()
    assert [p["step"] for p in after["series"]["loss"]] == list(range(991, 1001))


def test_checkpoints_of_a_new_job_are_empty_and_downloads_404(client: TestClient) -> None:
    job = _submit(client)
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints").json() == []
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints/latest").status_code == 404


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_upload_npz_describes_it_and_lists_it_with_the_builtins(client: TestClient) -> None:
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) * 5  # labels 0 and 5 are remapped to classes 0 and 1
    response = client.post("/v1/datasets", files={"file": ("../../etc/points.npz", _npz(x=x, y=y))})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["name"], dataset["task"], dataset["num_samples"]) == ("points.npz", "classification", 120)
    assert (dataset["sample_shape"], dataset["num_classes"], dataset["classes"]) == ([6], 2, [0, 5])
    listed = {d["name"] for d in client.get("/v1/datasets").json()["items"]}
    assert {"digits", "moons", "gaussian-ring", "points.npz"} <= listed
    assert client.get(f"/v1/datasets/{dataset['id']}").json()["sha256"] == dataset["sha256"]
    job = _submit(client, {**MOONS, "dataset": {"id": dataset["id"]}})
    assert job["spec"]["dataset"]["id"] == dataset["id"]


def test_upload_refuses_bad_files_with_422(client: TestClient) -> None:
    pickled = _npz(x=np.array([object(), object()], dtype=object))
    for name, data in [("x.npz", pickled), ("x.csv", b"a,b\n1\n"), ("x.exe", b"MZ")]:
        response = client.post("/v1/datasets", files={"file": (name, data)})
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"] == PROBLEM


def test_upload_over_the_cap_is_413(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.api.routes.datasets as route

    monkeypatch.setattr(route, "MAX_UPLOAD_BYTES", 1000)
    response = client.post("/v1/datasets", files={"file": ("big.csv", b"a\n" + b"1\n" * 2000)})
    assert response.status_code == 413


def test_catalog_lists_architectures_optimizers_datasets_and_limits(client: TestClient) -> None:
    catalog = client.get("/v1/catalog").json()
    assert set(catalog["architectures"]) == {"mlp", "cnn", "rnn", "gan"}
    assert set(catalog["optimizers"]) == {"sgd", "momentum", "adagrad", "rmsprop", "adam"}
    assert catalog["architectures"]["mlp"]["defaults"]["hidden_sizes"] == [128, 64]
    assert catalog["limits"]["MAX_EPOCHS"] == 1000
    assert {d["name"] for d in catalog["datasets"]} == {"digits", "moons", "circles", "gaussian-ring", "sine"}


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_and_reads_answer_503_quickly_when_dependencies_are_down(tmp_path) -> None:
    from support import free_port

    dead = free_port()
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{dead}/x",
        redis_url=f"redis://127.0.0.1:{dead}/0",
        nnforge_home=tmp_path,
    )
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        ready = client.get("/readyz")
        jobs = client.get("/v1/jobs", headers={"Authorization": "Bearer nnf_any"})
        elapsed = time.monotonic() - started
    assert ready.status_code == 503 and set(ready.json()["checks"].values()) != {"ok"}
    assert jobs.status_code == 503 and jobs.headers["content-type"] == PROBLEM
    assert elapsed < 10  # a loose bound against hanging, not a speed measurement


def test_app_starts_without_importing_torch(api_settings: Settings) -> None:
    code = (
        "import sys; from app.api.main import create_app; from app.core.settings import Settings; "
        f"create_app(Settings(nnforge_home={str(api_settings.nnforge_home)!r})); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
