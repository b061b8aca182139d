"""Deletion with a real Celery worker: a job it trained goes whole, a running one is refused until
cancelled; and RETENTION_DAYS, swept by the reconciler of every worker."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import new_token, redis_database
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_checkpoints, add_logs, add_metrics, finished_job
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.maintenance import run_maintenance
from app.core.settings import Settings
from app.db.deletion import job_parts
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Job

RETENTION_DAYS = 900  # far beyond the 10-day-old jobs other tests leave, so this sweep takes only ours
SHORTER = 400
MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [8]},
    "training": {"epochs": 2, "seed": 0},
}


@pytest.fixture(scope="module")
def settings(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=postgres_url,
        redis_url=redis_database(11),
        nnforge_home=tmp_path_factory.mktemp("retention"),
        heartbeat_seconds=0.2,
        reconcile_seconds=0.3,
        retention_days=RETENTION_DAYS,
    )


@pytest.fixture(scope="module")
def db(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api(settings: Settings, worker: WorkerProcess) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(settings, 'deleter')}"
        yield client


def _rows_of(db: sessionmaker[Session], job_id: str) -> dict[str, int]:
    with db() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table).where(column == job_id)) or 0
            for table, column in job_parts()
        }


def _status(api: TestClient, job_id: str, *wanted: str) -> str:
    return str(
        wait_for(
            lambda: (s := api.get(f"/v1/jobs/{job_id}").json()["status"]) in wanted and s,
            timeout=120,
            what=f"job {job_id} to be {' or '.join(wanted)}",
        )
    )


def test_running_job_is_409_until_cancelled_then_a_trained_job_is_deleted_whole(
    api: TestClient, db: sessionmaker[Session], worker: WorkerProcess
) -> None:
    long_run = api.post("/v1/jobs", json={**MOONS, "training": {"epochs": 1000}}).json()["id"]
    _status(api, long_run, "running")
    refused = api.delete(f"/v1/jobs/{long_run}")
    assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"]
    api.post(f"/v1/jobs/{long_run}/cancel")
    assert _status(api, long_run, "cancelled", "failed", "succeeded") == "cancelled"
    assert api.delete(f"/v1/jobs/{long_run}").status_code == 204

    job_id = api.post("/v1/jobs", json=MOONS).json()["id"]
    assert _status(api, job_id, "succeeded", "failed", "cancelled") == "succeeded", (
        worker.log_path.read_text()
    )
    stored = _rows_of(db, job_id)
    assert stored["metric"] > 0 and stored["checkpoint"] >= 1 and stored["metric_block"] > 0
    wait_for(lambda: _rows_of(db, job_id)["job_log"] > 0, timeout=10, what="the job's log lines")

    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204

    assert set(_rows_of(db, job_id).values()) == {0} and set(_rows_of(db, long_run).values()) == {0}
    assert api.get(f"/v1/jobs/{job_id}").status_code == 404
    assert job_id not in {job["id"] for job in api.get("/v1/jobs").json()["items"]}


def test_retention_pass_deletes_jobs_finished_before_retention_days_a_few_at_a_time(
    db: sessionmaker[Session], settings: Settings
) -> None:
    with transaction(db) as session:
        # younger than the worker's RETENTION_DAYS (it sweeps meanwhile), older than this pass's
        old = [finished_job(session, "kept-briefly", finished_days_ago=SHORTER + 100 + i) for i in range(3)]
        for job_id in old:
            add_checkpoints(session, job_id, epochs=1, nbytes=100)
            add_metrics(session, job_id, steps=10)
            add_logs(session, job_id, lines=2)
        recent = finished_job(session, "kept-briefly", finished_days_ago=SHORTER - 1)
        unfinished = finished_job(session, "kept-briefly", status="running", finished_days_ago=SHORTER + 200)

    counts = run_maintenance(db, retention_days=SHORTER, jobs_per_pass=2)

    assert counts["expired"] == 2 and counts["reclaimed"] == 0  # PostgreSQL: autovacuum's work
    with db() as session:
        assert session.get(Job, old[2]) is None and session.get(Job, old[1]) is None  # the oldest first
        assert session.get(Job, old[0]) is not None
    assert run_maintenance(db, retention_days=SHORTER, jobs_per_pass=2)["expired"] == 1
    assert run_maintenance(db, retention_days=None)["expired"] == 0
    with db() as session:
        assert {old[0], recent, unfinished} & set(session.scalars(select(Job.id))) == {recent, unfinished}
    assert set(_rows_of(db, old[0]).values()) == {0}


def test_worker_reconciler_deletes_jobs_past_retention_days(
    worker: WorkerProcess, db: sessionmaker[Session], tmp_path: Path
) -> None:
    with transaction(db) as session:
        expired = finished_job(session, "retained", status="failed", finished_days_ago=RETENTION_DAYS + 1)
        add_checkpoints(session, expired, epochs=2, nbytes=1000)
        kept = finished_job(session, "retained", status="failed", finished_days_ago=RETENTION_DAYS - 1)

    def gone() -> bool:
        with db() as session:
            return session.get(Job, expired) is None

    wait_for(gone, timeout=30, what="the worker's reconciler to delete the expired job")
    assert set(_rows_of(db, expired).values()) == {0}
    with db() as session:
        assert session.get(Job, kept) is not None
    assert "RETENTION_DAYS" in worker.log_path.read_text()
