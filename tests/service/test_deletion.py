"""DELETE of jobs, checkpoints and datasets on PostgreSQL: what goes, what stays, what is refused (409)."""

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_checkpoints, add_logs, add_metrics, finished_job

from app.api.checkpoints import find_checkpoint
from app.core.settings import Settings
from app.db import job_state
from app.db.checkpoints import protected_checkpoint_ids
from app.db.deletion import delete_finished_job, job_parts
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Dataset, IdempotencyKey, Job, MetricBlock

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


@pytest.fixture(scope="module")
def db(api_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(api_settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def owner(client: TestClient) -> str:
    return str(client.get("/v1/usage").json()["owner"])


def _npz(n: int = 12) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.random.default_rng(n).normal(size=(n, 2)).astype(np.float32), y=np.arange(n) % 2)
    return buffer.getvalue()


def _claim(session: Session, job_id: str, *, token: str) -> Job | None:
    """Start this very job: alone in a queue of its own, it is the one a claim of that queue takes."""
    job = session.get_one(Job, job_id)
    job.queue = f"only-{job_id[:8]}"
    session.flush()
    return job_state.claim(session, queue=job.queue, token=token, max_running_per_owner=100)


def _rows_of(db: sessionmaker[Session], job_id: str) -> dict[str, int]:
    with db() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table).where(column == job_id)) or 0
            for table, column in job_parts()
        }


def test_delete_finished_job_removes_everything_it_stored_and_its_idempotency_record(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    key = {"Idempotency-Key": "delete-me-1"}
    job_id = client.post("/v1/jobs", json=SPEC, headers=key).json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    with transaction(db) as session:  # what a run had written before it was cancelled
        add_checkpoints(session, job_id, epochs=2, nbytes=10_000)
        add_metrics(session, job_id, steps=100)
        add_logs(session, job_id, lines=5)
        session.get_one(Job, job_id).latest_samples = {"epoch": 1, "samples": [[0.0, 1.0]]}
    before = _rows_of(db, job_id)
    assert before["checkpoint"] == 2 and before["metric"] == 200 and before["job_log"] == 5
    assert before["metric_block"] > 0  # PostgreSQL's trigger summarised the series

    response = client.delete(f"/v1/jobs/{job_id}")

    assert response.status_code == 204 and response.content == b""
    assert set(_rows_of(db, job_id).values()) == {0}
    with db() as session:
        assert session.get(Job, job_id) is None
        assert (
            session.scalar(select(func.count()).select_from(MetricBlock).where(MetricBlock.job_id == job_id))
            == 0
        )
        assert session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == "delete-me-1")).all() == []
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
    # the key no longer replays a job that is gone: the same request creates a new one
    again = client.post("/v1/jobs", json=SPEC, headers=key)
    assert again.status_code == 202 and again.json()["id"] != job_id


def test_delete_queued_or_running_job_is_409_and_deletes_nothing(
    client: TestClient, db: sessionmaker[Session], owner: str
) -> None:
    queued = client.post("/v1/jobs", json=SPEC).json()["id"]
    running = client.post("/v1/jobs", json=SPEC).json()["id"]
    with transaction(db) as session:
        assert _claim(session, running, token="test-lease")
        add_checkpoints(session, running, epochs=1, nbytes=1000)

    for job_id, status in ((queued, "queued"), (running, "running")):
        response = client.delete(f"/v1/jobs/{job_id}")
        assert response.status_code == 409, response.text
        assert f"is {status}: cancel it first" in response.json()["detail"]
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == status
    assert _rows_of(db, running)["checkpoint"] == 1


def test_delete_checkpoint_refuses_the_newest_and_the_best_epochs(
    client: TestClient, db: sessionmaker[Session], owner: str
) -> None:
    with transaction(db) as session:
        job_id = finished_job(session, owner, best_epoch=2)
        ids = add_checkpoints(session, job_id, epochs=5, nbytes=2000)
        other = finished_job(session, owner)
        others = add_checkpoints(session, other, epochs=1, nbytes=10)
    with db() as session:
        job = session.get_one(Job, job_id)
        protected = protected_checkpoint_ids(session, job)
        # the rule is what `latest` and `best` download
        latest, best = (find_checkpoint(session=session, job=job, which=w) for w in ("latest", "best"))
        assert latest is not None and best is not None
        assert protected == {latest.id, best.id} == {ids[4], ids[1]}

    assert client.delete(f"/v1/jobs/{job_id}/checkpoints/{ids[0]}").status_code == 204
    for kept in (ids[1], ids[4]):
        refused = client.delete(f"/v1/jobs/{job_id}/checkpoints/{kept}")
        assert refused.status_code == 409 and "newest" in refused.json()["detail"]
    assert client.delete(f"/v1/jobs/{job_id}/checkpoints/{ids[0]}").status_code == 404  # gone already
    assert client.delete(f"/v1/jobs/{job_id}/checkpoints/{others[0]}").status_code == 404  # another job's
    assert client.delete(f"/v1/jobs/{job_id}/checkpoints/best").status_code == 422  # only by id
    listed = [c["id"] for c in client.get(f"/v1/jobs/{job_id}/checkpoints").json()]
    assert listed == ids[1:]
    assert client.get(f"/v1/jobs/{job_id}/checkpoints/best").headers["etag"].startswith(f'"{best.sha256}')


def test_delete_checkpoint_of_a_running_job_keeps_what_a_resume_needs(
    client: TestClient, db: sessionmaker[Session], owner: str
) -> None:
    job_id = client.post("/v1/jobs", json=SPEC).json()["id"]
    with transaction(db) as session:
        assert _claim(session, job_id, token="lease-2")
        ids = add_checkpoints(session, job_id, epochs=3, nbytes=100)
    assert client.delete(f"/v1/jobs/{job_id}/checkpoints/{ids[2]}").status_code == 409
    assert client.delete(f"/v1/jobs/{job_id}/checkpoints/{ids[0]}").status_code == 204
    with db() as session:
        newest = job_state.newest_checkpoint(session, job_id=job_id)
        assert newest is not None and newest.id == ids[2]


def test_delete_dataset_is_409_while_a_job_uses_it_then_finished_jobs_keep_their_checkpoints(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    key = {"Idempotency-Key": "upload-then-delete"}
    dataset_id = client.post("/v1/datasets", files={"file": ("d.npz", _npz())}, headers=key).json()["id"]
    spec = {**SPEC, "dataset": {"id": dataset_id}}
    finished = client.post("/v1/jobs", json=spec).json()["id"]
    client.post(f"/v1/jobs/{finished}/cancel")
    with transaction(db) as session:
        add_checkpoints(session, finished, epochs=1, nbytes=500)
    queued = client.post("/v1/jobs", json=spec).json()["id"]

    refused = client.delete(f"/v1/datasets/{dataset_id}")
    assert refused.status_code == 409 and queued in refused.json()["detail"]
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200
    assert client.get(f"/v1/jobs/{finished}").json()["dataset_deleted"] is False

    client.post(f"/v1/jobs/{queued}/cancel")
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204

    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 404
    for job_id in (finished, queued):
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["dataset_deleted"] is True and job["spec"]["dataset"]["id"] == dataset_id
    assert len(client.get(f"/v1/jobs/{finished}/checkpoints").json()) == 1
    assert client.get(f"/v1/jobs/{finished}/checkpoints/latest").status_code == 200
    with db() as session:
        assert session.get(Dataset, dataset_id) is None
    # the upload's Idempotency-Key went with it: the same request stores the file again
    again = client.post("/v1/datasets", files={"file": ("d.npz", _npz())}, headers=key)
    assert again.status_code == 201 and again.json()["id"] != dataset_id
    refused_spec = client.post("/v1/jobs", json=spec)
    assert refused_spec.status_code == 422 and refused_spec.json()["errors"][0]["field"] == "dataset.id"


def test_delete_checkpoint_ids_outside_the_column_are_422(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=SPEC).json()["id"]
    for bad in ("0", str(2**31), "-1", "abc", "latest"):
        assert client.delete(f"/v1/jobs/{job_id}/checkpoints/{bad}").status_code == 422, bad
    assert client.delete(f"/v1/jobs/{job_id}/checkpoints/{2**31 - 1}").status_code == 404


def test_delete_finished_job_deletes_nothing_of_an_unfinished_job(
    db: sessionmaker[Session], owner: str
) -> None:
    with transaction(db) as session:
        job_id = finished_job(session, owner, status="running")
        add_checkpoints(session, job_id, epochs=1, nbytes=10)
    with db() as session:
        assert not delete_finished_job(session, job_id=job_id, owner=owner)
        session.rollback()  # as its callers do
    assert _rows_of(db, job_id)["checkpoint"] == 1
