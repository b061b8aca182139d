"""GET /v1/usage and MAX_STORAGE_BYTES_PER_OWNER on PostgreSQL: what an owner stores, and the 413 for a job
or an upload that would take it past the limit."""

import io
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_checkpoints, add_logs, add_metrics, finished_job

from app.api.main import create_app
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.usage import LOG_ROW_BYTES, METRIC_ROW_BYTES, owner_over_storage, owner_usage

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}
SPEC_PARAMETERS = 2 * 4 + 4 + 4 * 2 + 2  # moons: 2 features -> 4 hidden -> 2 classes


@pytest.fixture(scope="module")
def db(api_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(api_settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _client(settings: Settings, owner: str) -> TestClient:
    client = TestClient(create_app(settings))
    client.headers["Authorization"] = f"Bearer {new_token(settings, owner)}"
    return client


def _npz(n: int) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.random.default_rng(n).normal(size=(n, 2)).astype(np.float32), y=np.arange(n) % 2)
    return buffer.getvalue()


def test_usage_counts_what_the_owner_stores_and_nothing_of_others(
    api_settings: Settings, db: sessionmaker[Session]
) -> None:
    owner = f"usage-{uuid.uuid4().hex[:6]}"
    with _client(api_settings, owner) as client:
        empty = client.get("/v1/usage").json()
        assert empty["owner"] == owner and empty["total_bytes"] == 0 and empty["limit_bytes"] is None
        assert {empty[k]["count"] for k in ("jobs", "checkpoints", "metrics", "logs", "datasets")} == {0}

        upload = _npz(40)
        assert client.post("/v1/datasets", files={"file": ("u.npz", upload)}).status_code == 201
        with transaction(db) as session:
            job_id = finished_job(session, owner)
            add_checkpoints(session, job_id, epochs=3, nbytes=5000)
            metrics = add_metrics(session, job_id, steps=50)
            logs = add_logs(session, job_id, lines=4)
            other = finished_job(session, "someone-else")  # not counted
            add_checkpoints(session, other, epochs=1, nbytes=99_999)
        report = client.get("/v1/usage").json()

    assert report["checkpoints"] == {"count": 3, "bytes": 15_000}
    assert report["datasets"] == {"count": 1, "bytes": len(upload)}
    assert report["metrics"] == {"count": metrics, "bytes": metrics * METRIC_ROW_BYTES["postgresql"]}
    assert report["logs"]["count"] == logs
    assert report["logs"]["bytes"] > logs * LOG_ROW_BYTES["postgresql"]  # the text on top of the rows
    assert report["jobs"]["count"] == 1 and report["jobs"]["bytes"] > 0
    kinds = ("jobs", "checkpoints", "metrics", "logs", "datasets")
    assert report["total_bytes"] == sum(report[k]["bytes"] for k in kinds)
    with db() as session:
        assert owner_usage(session, owner).total_bytes == report["total_bytes"]


def test_owner_over_storage_is_true_from_the_limit_on(
    api_settings: Settings, db: sessionmaker[Session]
) -> None:
    owner = f"over-{uuid.uuid4().hex[:6]}"
    with transaction(db) as session:
        add_checkpoints(session, finished_job(session, owner), epochs=1, nbytes=1000)
    with db() as session:
        used = owner_usage(session, owner).total_bytes
        assert not owner_over_storage(session, owner=owner, limit=None)
        assert not owner_over_storage(session, owner=owner, limit=used + 1)
        assert owner_over_storage(session, owner=owner, limit=used)
        assert owner_over_storage(session, owner=owner, limit=0)


def test_upload_past_the_storage_limit_is_413_naming_the_limit_and_the_usage(api_settings: Settings) -> None:
    first, second = _npz(30), _npz(31)
    limit = len(first) + len(second) // 2
    limited = api_settings.model_copy(update={"max_storage_bytes_per_owner": limit})
    with _client(limited, f"quota-{uuid.uuid4().hex[:6]}") as client:
        assert client.post("/v1/datasets", files={"file": ("a.npz", first)}).status_code == 201
        key = {"Idempotency-Key": "over-the-limit"}
        refused = client.post("/v1/datasets", files={"file": ("b.npz", second)}, headers=key)
        assert refused.status_code == 413, refused.text
        body = refused.json()
        assert body["title"] == "Storage limit reached" and "MAX_STORAGE_BYTES_PER_OWNER" in body["detail"]
        assert (body["limit_bytes"], body["usage_bytes"], body["request_bytes"]) == (
            limit,
            len(first),
            len(second),
        )
        assert f"{limit:,}" in body["detail"] and f"{len(first):,} in use" in body["detail"]
        assert [d["size"] for d in client.get("/v1/datasets").json()["items"] if d["id"]] == [len(first)]
        # the same bytes again store nothing: not refused
        assert client.post("/v1/datasets", files={"file": ("a.npz", first)}).status_code == 200
        assert client.get("/v1/usage").json()["limit_bytes"] == limit
        # a refused request frees its key: with room, the same key stores the file
        client.app.state.settings = limited.model_copy(update={"max_storage_bytes_per_owner": None})
        assert client.post("/v1/datasets", files={"file": ("b.npz", second)}, headers=key).status_code == 201


def test_job_whose_first_checkpoint_would_pass_the_limit_is_413(
    api_settings: Settings, db: sessionmaker[Session]
) -> None:
    owner = f"jobquota-{uuid.uuid4().hex[:6]}"
    with transaction(db) as session:
        add_checkpoints(session, finished_job(session, owner), epochs=1, nbytes=1000)
    with db() as session:
        used = owner_usage(session, owner).total_bytes
    weights = 4 * SPEC_PARAMETERS  # the least its first checkpoint will hold
    with _client(
        api_settings.model_copy(update={"max_storage_bytes_per_owner": used + weights}), owner
    ) as client:
        refused = client.post("/v1/jobs", json=SPEC)
        assert refused.status_code == 413, refused.text
        body = refused.json()
        assert body["request_bytes"] == weights and body["limit_bytes"] == used + weights
        assert body["usage_bytes"] > used  # the new job's own row counts with it
        assert f"a job of {SPEC_PARAMETERS} parameters" in body["detail"]
        assert len(client.get("/v1/jobs").json()["items"]) == 1  # nothing stored
        assert client.get("/v1/usage").json()["total_bytes"] == used
    with _client(
        api_settings.model_copy(update={"max_storage_bytes_per_owner": used + 100_000}), owner
    ) as client:
        assert client.post("/v1/jobs", json=SPEC).status_code == 202
