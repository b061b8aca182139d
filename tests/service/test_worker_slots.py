"""A worker's slots: a zygote ready to fork the next job's training process stays beside each job, and a
worker with two slots trains two jobs at once. Real Celery workers, Redis and PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings
from app.db.job_state import JobStatus
from workers.zygote import forks_for

REDIS_DB = 14
LONG_JOB = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [256, 256]},
    "training": {"epochs": 500, "batch_size": 8},
}


def _process_table() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it ended meanwhile
            continue
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


def _trainers_of(worker: WorkerProcess) -> list[str]:
    """The command lines of the processes under this worker's pool: training processes, and the zygotes
    (or standby processes) ready for each slot's next job."""
    table = _process_table()
    below = {worker.process.pid}
    while grown := {pid for pid, (parent, _) in table.items() if parent in below} - below:
        below |= grown
    pool = {pid for pid, (parent, _) in table.items() if parent == worker.process.pid}
    return [cmd for pid, (_, cmd) in table.items() if pid in below - pool - {worker.process.pid}]


@pytest.fixture(scope="module", params=[1, 2], ids=["one-slot", "two-slots"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, WorkerProcess, int]]:
    from conftest import new_token, own_postgres_database, redis_database

    slots = request.param
    with own_postgres_database("nnforge_slots") as database_url:  # no other module's jobs to claim
        settings = Settings(
            database_url=database_url,
            redis_url=redis_database(REDIS_DB),
            nnforge_home=tmp_path_factory.mktemp("slots"),
            heartbeat_seconds=0.2,
            worker_concurrency=slots,
        )
        worker = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
        try:
            with TestClient(create_app(settings)) as client:
                client.headers["Authorization"] = f"Bearer {new_token(settings, f'slots-{slots}')}"
                yield client, worker, slots
        finally:
            worker.stop()


def _cancel_all(client: TestClient, job_ids: list[str]) -> None:
    for job_id in job_ids:
        client.post(f"/v1/jobs/{job_id}/cancel")
    for job_id in job_ids:
        wait_for(
            lambda j=job_id: client.get(f"/v1/jobs/{j}").json()["status"] == JobStatus.CANCELLED,
            timeout=60,
            what=f"job {job_id} to stop",
        )


def test_every_slot_trains_a_job_while_the_next_process_waits(
    stack: tuple[TestClient, WorkerProcess, int],
) -> None:
    client, worker, slots = stack
    job_ids = [client.post("/v1/jobs", json=LONG_JOB).json()["id"] for _ in range(slots)]
    try:
        wait_for(
            lambda: all(client.get(f"/v1/jobs/{j}").json()["progress"]["step"] > 0 for j in job_ids),
            timeout=120,
            what=f"{slots} jobs training at once",
        )

        ready = "workers.zygote" if forks_for("any") else "--standby"  # where a job may use CUDA: a standby

        def ready_for_next() -> list[str] | None:
            trainers = _trainers_of(worker)
            return trainers if sum(ready in cmd for cmd in trainers) == slots else None

        trainers = wait_for(ready_for_next, timeout=60, what=f"{ready} beside each running job")
        assert all(any(job_id in cmd for cmd in trainers) for job_id in job_ids), (job_ids, trainers)
    finally:
        _cancel_all(client, job_ids)
