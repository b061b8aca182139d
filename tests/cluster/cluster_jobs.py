"""Submitting jobs through the cluster's API host and reading what became of them in its database."""

from collections import Counter
from datetime import datetime
from typing import Any

import httpx2
import sqlalchemy as sa
from jobs import job_row, steps_of
from netns_cluster import Stack
from sqlalchemy import select
from support import wait_for

from app.db.engine import transaction
from app.db.job_logs import JobLog
from app.db.tables import Job


def spec(
    *, epochs: int, hidden: int = 32, seed: int = 0, batch_size: int = 32, every_epochs: int | None = 1
) -> dict[str, Any]:
    """A small digits MLP, by default with a checkpoint every epoch (a resume repeats at most one epoch;
    None: the default policy, one every 30 s and the last)."""
    return {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [hidden]},
        "optimizer": {"name": "momentum", "lr": 0.02},
        "training": {
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "device": "cpu",
            "checkpoint": {"every_epochs": every_epochs} if every_epochs else {},
        },
    }


def steps_per_epoch(batch_size: int) -> int:
    return -(-1258 // batch_size)  # digits' training part: 1258 samples


def submit(stack: Stack, job_spec: dict[str, Any], name: str) -> str:
    response = httpx2.post(
        f"{stack.url}/v1/jobs", json=job_spec | {"name": name}, headers=stack.headers, timeout=30
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def read(stack: Stack, job_id: str) -> dict[str, Any]:
    response = httpx2.get(f"{stack.url}/v1/jobs/{job_id}", headers=stack.headers, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def finished(stack: Stack, job_ids: list[str], *, timeout: float) -> list[Job]:
    factory = stack.service.factory

    def all_done() -> list[Job] | None:
        rows = [job_row(factory, job_id) for job_id in job_ids]
        return rows if all(row.status not in ("queued", "running") for row in rows) else None

    return wait_for(all_done, timeout=timeout, interval=0.25, what=f"{len(job_ids)} jobs to finish")


def running_on(stack: Stack, job_id: str, host: str, *, attempt: int = 1, epoch: int = 0) -> Job:
    factory = stack.service.factory

    def there() -> Job | None:
        row = job_row(factory, job_id)
        ok = (row.status, row.worker_host, row.attempt) == ("running", host, attempt) and row.epoch >= epoch
        return row if ok else None

    return wait_for(there, timeout=120, interval=0.05, what=f"job {job_id} at epoch {epoch} on {host}")


def assert_every_step_once(stack: Stack, job_id: str, total_steps: int) -> None:
    assert steps_of(stack.service.factory, job_id) == list(range(1, total_steps + 1))


# Who wrote what, by the address each committed row came from (inet_client_addr()) and the database's clock:
# the test's own instrument, installed on the cluster's database, not part of the service.
AUDIT = """
CREATE TABLE IF NOT EXISTS test_write_audit (
    tbl text, job_id text, client inet, at timestamptz DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION test_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_write_audit (tbl, job_id, client) VALUES (TG_TABLE_NAME, NEW.job_id, inet_client_addr());
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION test_audit_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_write_audit (tbl, job_id, client) VALUES ('job', NEW.id, inet_client_addr());
    RETURN NULL;
END $$;
"""


def install_write_audit(stack: Stack) -> None:
    with transaction(stack.service.factory) as session:
        session.execute(sa.text(AUDIT))
        for table in ("metric", "checkpoint", "job_log"):
            session.execute(
                sa.text(
                    f"CREATE OR REPLACE TRIGGER test_audit AFTER INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION test_audit_row()"
                )
            )
        session.execute(
            sa.text(
                "CREATE OR REPLACE TRIGGER test_audit AFTER UPDATE ON job "
                "FOR EACH ROW EXECUTE FUNCTION test_audit_job()"
            )
        )


def database_time(stack: Stack) -> datetime:
    with stack.service.factory() as session:
        return session.execute(sa.text("SELECT clock_timestamp()")).scalar_one()


def writes_from(stack: Stack, host: str, job_id: str, *, after: datetime | None = None) -> Counter[str]:
    """Rows the host's processes committed for the job (per table; `job`: updates of its row)."""
    query = "SELECT tbl FROM test_write_audit WHERE job_id = :job AND client = CAST(:address AS inet)"
    if after is not None:
        query += " AND at > :after"
    with stack.service.factory() as session:
        rows = session.execute(
            sa.text(query), {"job": job_id, "address": stack.cluster.hosts[host].address, "after": after}
        ).scalars()
        return Counter(rows)


def running_somewhere(stack: Stack, job_id: str, *, epoch: int) -> Job:
    factory = stack.service.factory
    return wait_for(
        lambda: (row := job_row(factory, job_id)).status == "running" and row.epoch >= epoch and row,
        timeout=120,
        interval=0.05,
        what=f"job {job_id} at epoch {epoch}",
    )


def log_lines(stack: Stack, job_id: str) -> list[str]:
    with stack.service.factory() as session:
        return list(
            session.scalars(select(JobLog.message).where(JobLog.job_id == job_id).order_by(JobLog.id))
        )


def log_times(stack: Stack, job_id: str) -> list[datetime]:
    with stack.service.factory() as session:
        return list(session.scalars(select(JobLog.time).where(JobLog.job_id == job_id)))
