"""Deleting gives the space back: the SQLite file shrinks (incremental auto-vacuum, run after each DELETE),
and PostgreSQL's checkpoint table, TOAST included, shrinks once vacuumed (autovacuum does it unasked)."""

import sqlite3
import uuid
from pathlib import Path

import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool
from stored_rows import add_checkpoints, add_metrics, finished_job

from app.api.main import create_app
from app.core.maintenance import run_maintenance
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.migrate import upgrade_to_head
from app.db.space import INCREMENTAL, PAGES_PER_CALL, reclaim_space

JOBS = 50
CHECKPOINTS_PER_JOB = 2
CHECKPOINT_BYTES = 64 * 1024
INSERTED = JOBS * CHECKPOINTS_PER_JOB * CHECKPOINT_BYTES  # 6.25 MiB of checkpoints


def _fill(factory: sessionmaker[Session], owner: str) -> list[str]:
    ids = []
    with transaction(factory) as session:
        for _ in range(JOBS):
            job_id = finished_job(session, owner, status="failed")
            add_checkpoints(session, job_id, epochs=CHECKPOINTS_PER_JOB, nbytes=CHECKPOINT_BYTES)
            add_metrics(session, job_id, steps=200)
            ids.append(job_id)
    return ids


def _delete_all(client: TestClient, ids: list[str]) -> None:
    for job_id in ids:
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204


def test_deleting_50_jobs_shrinks_the_sqlite_file(tmp_path: Path) -> None:
    settings = Settings(nnforge_home=tmp_path, database_url=None, redis_url=None)
    path = tmp_path / "nnforge.db"
    upgrade_to_head(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, poolclass=NullPool)
    factory = make_session_factory(engine)
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(settings, 'sqlite-owner')}"
        empty = path.stat().st_size
        ids = _fill(factory, "sqlite-owner")
        with engine.connect() as connection:  # the inserted pages out of the log, into the file
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        full = path.stat().st_size

        _delete_all(client, ids)  # each DELETE reclaims up to PAGES_PER_CALL pages after it answers

        emptied = path.stat().st_size
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL
        assert connection.execute("PRAGMA freelist_count").fetchone()[0] < 10
    print(f"\nSQLite file: {empty:,} B empty, {full:,} B with {JOBS} jobs, {emptied:,} B after deleting them")
    assert full - empty > INSERTED
    assert emptied < full - 0.9 * INSERTED
    engine.dispose()


def test_deleting_50_jobs_shrinks_postgresql_checkpoint_table_with_its_toast_after_vacuum(
    client: TestClient, api_settings: Settings
) -> None:
    engine = make_engine(api_settings.resolved_database_url)
    factory = make_session_factory(engine)
    owner = client.get("/v1/usage").json()["owner"]

    def checkpoint_bytes() -> int:  # heap, TOAST and indexes, after a plain VACUUM (what autovacuum runs)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM checkpoint"))
            return int(connection.execute(text("SELECT pg_total_relation_size('checkpoint')")).scalar_one())

    before = checkpoint_bytes()
    ids = _fill(factory, owner)
    full = checkpoint_bytes()
    with engine.connect() as connection:
        toast = connection.execute(
            text("SELECT pg_total_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'checkpoint'")
        ).scalar_one()

    _delete_all(client, ids)
    after = checkpoint_bytes()

    print(f"\nPostgreSQL checkpoint table: {before:,} B before, {full:,} B with {JOBS} jobs", end=" ")
    print(f"(TOAST {toast:,} B), {after:,} B after deleting them and VACUUM")
    assert full - before > INSERTED and toast > INSERTED
    assert after < full - 0.9 * INSERTED
    engine.dispose()


def test_upgrade_turns_an_existing_sqlite_database_to_incremental_auto_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:  # as an older nnforge left it: no auto-vacuum, data in it
        connection.execute("CREATE TABLE kept (x BLOB)")
        connection.execute("INSERT INTO kept VALUES (zeroblob(100000))")
    url = f"sqlite:///{path}"

    upgrade_to_head(url)

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL
        assert connection.execute("SELECT length(x) FROM kept").fetchone()[0] == 100000
        assert connection.execute("SELECT count(*) FROM job").fetchone()[0] == 0


@pytest.mark.parametrize("pages", [1, 10])
def test_reclaim_space_returns_at_most_the_pages_asked_for(tmp_path: Path, pages: int) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade_to_head(url)
    engine = make_engine(url, poolclass=NullPool)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        job_id = finished_job(session, f"o-{uuid.uuid4().hex[:4]}")
        add_checkpoints(session, job_id, epochs=1, nbytes=200_000)
    with transaction(factory) as session:
        session.execute(text("DELETE FROM checkpoint"))
    with engine.connect() as connection:
        free = connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()
    assert free > 20

    assert reclaim_space(factory, max_pages=pages) == pages
    assert reclaim_space(factory) == free - pages
    assert reclaim_space(factory) == 0
    engine.dispose()


def test_sqlite_delete_and_maintenance_remove_the_idempotency_record_and_reclaim_pages(
    tmp_path: Path,
) -> None:
    settings = Settings(nnforge_home=tmp_path, database_url=None, redis_url=None)
    upgrade_to_head(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, poolclass=NullPool)
    factory = make_session_factory(engine)
    spec = {
        "dataset": {"name": "moons"},
        "model": {"arch": "mlp", "hidden_sizes": [4]},
        "training": {"epochs": 1},
    }
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(settings, 'lite')}"
        key = {"Idempotency-Key": "sqlite-key"}
        job_id = client.post("/v1/jobs", json=spec, headers=key).json()["id"]
        client.post(f"/v1/jobs/{job_id}/cancel")
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        again = client.post("/v1/jobs", json=spec, headers=key)
        assert again.status_code == 202 and again.json()["id"] != job_id
    with transaction(factory) as session:
        old = finished_job(session, "lite", finished_days_ago=30)
        add_checkpoints(session, old, epochs=3, nbytes=2 * PAGES_PER_CALL * 4096)  # 24 MiB

    counts = run_maintenance(factory, retention_days=7)

    assert counts["expired"] == 1
    assert counts["reclaimed"] > 5 * PAGES_PER_CALL  # several calls in one pass
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
    engine.dispose()
