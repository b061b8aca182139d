"""Jobs written straight into the job table, as a worker leaves them, for tests that need many jobs
(lists, filters, sorts, id prefixes) without training them. bench/stack.insert_jobs is the bulk version."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Job
from models.specs import parse_job_spec
from models.templates import TEMPLATES

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job_row(owner: str, minute: int, **fields: Any) -> dict[str, Any]:
    """A finished MLP job as the worker leaves one (bench/stack.insert_jobs's shape), `minute`s after T0."""
    spec = parse_job_spec(TEMPLATES["mlp"]).model_dump(mode="json")
    spec_changes = {key: fields.pop(key) for key in ("optimizer", "dataset") if key in fields}
    for key, name in spec_changes.items():
        spec[key] = {**spec[key], "name": name}
    created = T0 + timedelta(minutes=minute)
    return {
        "id": str(uuid.uuid4()),
        "owner": owner,
        "name": None,
        "arch": "mlp",
        "spec": spec,
        "queue": "cpu",
        "num_parameters": 1,
        "status": "succeeded",
        "version": 1,
        "attempt": 1,
        "max_restarts": 3,
        "cancel_requested": False,
        "epoch": 3,
        "step": 30,
        "total_epochs": 3,
        "steps_per_epoch": 10,
        "latest_metrics": {},
        "best_metrics": {},
        "best_test_metrics": {},
        "created_at": created,
        "started_at": created,
        "finished_at": created + timedelta(seconds=60),
    } | fields


def insert(url: str, rows: list[dict[str, Any]]) -> list[str]:
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as session:
        session.execute(sa.insert(Job), rows)
    engine.dispose()
    return [row["id"] for row in rows]
