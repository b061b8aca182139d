"""An owner at MAX_STORAGE_BYTES_PER_OWNER: a job already running keeps training but keeps only its newest
checkpoint, and says so in its log. A real Celery worker on PostgreSQL and Redis."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings
from app.db.job_state import TERMINAL

REDIS_DB = 14
LIMIT = 60_000  # admits the job (its row and 4 bytes a parameter), not its metric rows and checkpoints
SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [8]},
    "training": {"epochs": 6, "seed": 0, "checkpoint": {"every_epochs": 1, "keep_last": 3}},
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from conftest import new_token, own_postgres_database, redis_database

    home = tmp_path_factory.mktemp("storage-limit")
    with own_postgres_database("nnforge_storage") as database_url:  # no other worker claims its job
        settings = Settings(
            database_url=database_url,
            redis_url=redis_database(REDIS_DB),
            nnforge_home=home,
            heartbeat_seconds=0.2,
            max_storage_bytes_per_owner=LIMIT,
        )
        worker = WorkerProcess(settings, home / "worker.log")
        try:
            with TestClient(create_app(settings)) as client:
                client.headers["Authorization"] = f"Bearer {new_token(settings, 'nearly-full')}"
                yield client
        finally:
            worker.stop()


def test_a_job_past_the_limit_keeps_training_with_its_newest_checkpoint_only(api: TestClient) -> None:
    posted = api.post("/v1/jobs", json=SPEC)
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["id"]
    job = wait_for(
        lambda: (j := api.get(f"/v1/jobs/{job_id}").json())["status"] in TERMINAL and j,
        timeout=120,
        what="the job",
    )
    assert job["status"] == "succeeded" and job["progress"]["epoch"] == 6
    checkpoints = api.get(f"/v1/jobs/{job_id}/checkpoints").json()
    assert [c["epoch"] for c in checkpoints] == [6]  # keep_last 3 would have kept three
    lines = wait_for(
        lambda: [
            line["message"]
            for line in api.get(f"/v1/jobs/{job_id}/logs").json()["items"]
            if "storage limit" in line["message"]
        ],
        timeout=10,
        what="the storage-limit log line",
    )
    assert len(lines) == 1 and "keeping only its newest checkpoint" in lines[0]
    assert api.get("/v1/usage").json()["total_bytes"] >= LIMIT
