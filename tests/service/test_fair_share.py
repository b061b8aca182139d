"""Fair share with a real Celery worker of one slot, Redis and PostgreSQL: a worker woken by a message for one
job starts the fairest queued job instead, and still each job runs once and none is lost."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.tables import Job

REDIS_DB = 15
SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    """A database of its own: jobs other modules left queued in the session's would take turns too."""
    from conftest import own_postgres_database, redis_database

    with own_postgres_database("nnforge_fair") as url:
        yield Settings(
            database_url=url,
            redis_url=redis_database(REDIS_DB),
            nnforge_home=tmp_path / "home",
            heartbeat_seconds=0.2,
            rate_limit_burst=1000,
        )


def _submit(settings: Settings, owner: str, bodies: list[dict]) -> list[str]:
    from conftest import new_token

    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(settings, owner)}"
        responses = [client.post("/v1/jobs", json=body) for body in bodies]
    assert {r.status_code for r in responses} == {202}, responses[-1].text
    return [r.json()["id"] for r in responses]


@pytest.mark.timeout(600)  # 23 jobs one after another, each in a fresh training process: ~200 s at load 6
def test_one_slot_serves_owners_in_turns_and_priority_within_one(
    fresh_settings: Settings, tmp_path: Path
) -> None:
    a_jobs = _submit(fresh_settings, "owner-a", [{**SPEC, "name": f"A{i}"} for i in range(1, 21)])
    b_jobs = _submit(fresh_settings, "owner-b", [{**SPEC, "name": f"B{i}"} for i in (1, 2)])
    [a_high] = _submit(fresh_settings, "owner-a", [{**SPEC, "name": "A-high", "priority": "high"}])
    every = [*a_jobs, *b_jobs, a_high]
    engine = make_engine(fresh_settings.resolved_database_url)
    factory = make_session_factory(engine)

    def finished() -> list[Job] | None:
        with factory() as session:
            rows = list(session.scalars(sa.select(Job).where(Job.id.in_(every))))
        return rows if all(r.status in ("succeeded", "failed", "cancelled") for r in rows) else None

    worker = WorkerProcess(fresh_settings, tmp_path / "worker.log")  # after every POST: one queue, no race
    try:
        rows = wait_for(finished, timeout=540, interval=0.5, what="all 23 jobs to finish")
    finally:
        worker.stop()
        engine.dispose()

    # none lost, none run twice: every job succeeded on its first and only attempt
    assert {(r.status, r.attempt) for r in rows} == {("succeeded", 1)}, worker.log_path.read_text()[-3000:]
    assert all(r.started_at == r.attempt_started_at for r in rows)
    start = {r.name: r.attempt_started_at for r in rows}
    end = {r.name: r.finished_at for r in rows}
    order = sorted(start, key=lambda name: start[name])
    # One slot, so the running counts tie at every claim and owners take turns. First, neither owner has
    # run a job: A's high-priority job, the highest of all. Then B (never served), then A, B, and A's
    # normal jobs in age.
    assert order == ["A-high", "B1", "A1", "B2", *[f"A{i}" for i in range(2, 21)]]
    assert start["B1"] < end["A3"]
    assert all(start["A-high"] < start[f"A{i}"] for i in range(1, 21))
