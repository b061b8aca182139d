"""Jobs that cannot run away (issue 17, item 4): a job past MAX_JOB_MEMORY_BYTES ends out_of_memory, a
cancel a stuck process does not act on stops it after CANCEL_GRACE_SECONDS, a step past MAX_STEP_SECONDS
fails the job as timeout. A real Celery worker (with small bounds) on PostgreSQL and Redis; the API keeps
the defaults, so the memory-hungry job is admitted and meets its bound in the worker. A stuck step is a
stopped process (SIGSTOP): to the process, a step that lasted as long as it was stopped."""

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings
from app.db.job_state import TERMINAL

IN_TRANSACTION = sa.text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
)
REDIS_DB = 9
MEMORY_LIMIT = 512 * 2**20  # a training process's own ~0.35 GB fits; the job below needs ~0.5 GB more
GRACE_SECONDS = 2.0
STEP_SECONDS = 5.0
LONG_JOB = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [64]},
    "training": {"epochs": 500, "batch_size": 8, "checkpoint": {"every_epochs": 1}},
}
HUNGRY_JOB = {  # 17 M parameters: 68 MB of weights, as much again of gradients, twice that of Adam's state
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [4096, 4096]},
    "training": {"epochs": 1},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, sa.Engine]]:
    from conftest import new_token, own_postgres_database, redis_database

    home = tmp_path_factory.mktemp("runaway")
    with own_postgres_database("nnforge_runaway") as database_url:  # no other worker claims its jobs
        settings = Settings(
            database_url=database_url,
            redis_url=redis_database(REDIS_DB),
            nnforge_home=home,
            heartbeat_seconds=0.2,
        )
        bounded = settings.model_copy(
            update={
                "max_job_memory_bytes": MEMORY_LIMIT,
                "cancel_grace_seconds": GRACE_SECONDS,
                "max_step_seconds": STEP_SECONDS,
            }
        )
        worker = WorkerProcess(bounded, home / "worker.log")
        try:
            with TestClient(create_app(settings)) as client:
                client.headers["Authorization"] = f"Bearer {new_token(settings, 'runaway')}"
                database = sa.create_engine(settings.resolved_database_url, poolclass=sa.NullPool)
                yield client, database
                database.dispose()
        finally:
            worker.stop()


@pytest.fixture
def api(stack: tuple[TestClient, sa.Engine]) -> TestClient:
    return stack[0]


@pytest.fixture
def freeze(stack: tuple[TestClient, sa.Engine]) -> Iterator[Callable[[int], None]]:
    """SIGSTOP a training process outside any transaction (a process stopped inside one would hold its job's
    row lock, and the cancel would wait for it: a stuck step holds none); SIGCONT it at the end, if alive."""
    stopped = []

    def stop(pid: int) -> None:
        stopped.append(pid)
        for _ in range(100):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.3)  # every other client's transaction ends meanwhile
            with stack[1].connect() as connection:
                if not connection.scalar(IN_TRANSACTION):
                    return
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        raise AssertionError(f"process {pid} was inside a transaction at every try")

    yield stop
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _submit(api: TestClient, spec: dict[str, Any]) -> str:
    posted = api.post("/v1/jobs", json=spec)
    assert posted.status_code == 202, posted.text
    return str(posted.json()["id"])


def _ended(api: TestClient, job_id: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for(
        lambda: (job := api.get(f"/v1/jobs/{job_id}").json())["status"] in TERMINAL and job,
        timeout=timeout,
        what=f"job {job_id} to end",
    )


def _training(api: TestClient, job_id: str) -> int:
    """The pid of the job's training process, once it has trained a step (found by its command line)."""
    wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["progress"]["step"] > 0, timeout=90, what="a step")
    for proc in Path("/proc").iterdir():
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"workers.trainer" in words and job_id.encode() in words:
            return int(proc.name)
    raise AssertionError(f"no training process shows job {job_id}")


def test_a_job_past_its_memory_limit_fails_out_of_memory_without_a_retry(api: TestClient) -> None:
    job = _ended(api, _submit(api, HUNGRY_JOB))
    assert (job["status"], job["error"]["type"], job["attempt"]) == ("failed", "out_of_memory", 1), job
    assert "out of memory" in job["error"]["message"]
    assert f"MAX_JOB_MEMORY_BYTES = {MEMORY_LIMIT:,}" in job["error"]["message"]


def test_a_cancel_a_stuck_process_ignores_stops_it_after_the_grace(
    api: TestClient, freeze: Callable[[int], None]
) -> None:
    job_id = _submit(api, LONG_JOB)
    pid = _training(api, job_id)
    wait_for(lambda: api.get(f"/v1/jobs/{job_id}/checkpoints").json(), timeout=60, what="a checkpoint")
    freeze(pid)  # stuck in a step: it never reads the cancel
    asked = time.monotonic()
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    job = _ended(api, job_id, timeout=60)
    waited = time.monotonic() - asked
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what="the process to be stopped")
    assert (job["status"], job["error"]["type"]) == ("cancelled", "cancelled"), job
    assert "CANCEL_GRACE_SECONDS" in job["error"]["message"], job["error"]
    assert waited >= GRACE_SECONDS  # not before the grace: the process had it to stop on its own
    assert api.get(f"/v1/jobs/{job_id}/checkpoints").json()  # its last checkpoint is kept


def test_a_step_past_max_step_seconds_fails_the_job_as_timeout_naming_the_step(
    api: TestClient, freeze: Callable[[int], None]
) -> None:
    job_id = _submit(api, LONG_JOB)
    pid = _training(api, job_id)
    freeze(pid)
    time.sleep(STEP_SECONDS + 1)
    os.kill(pid, signal.SIGCONT)  # the step it was in has now lasted over MAX_STEP_SECONDS
    job = _ended(api, job_id, timeout=60)
    assert (job["status"], job["error"]["type"], job["attempt"]) == ("failed", "timeout", 1), job
    message = job["error"]["message"]
    assert f"made no progress for over MAX_STEP_SECONDS = {STEP_SECONDS:g} s" in message
    if message.startswith("step "):  # "step N (epoch E) …": the step it was stopped in
        assert int(message.split()[1]) >= job["progress"]["step"] > 0  # recorded up to it, or short of it
    else:  # stopped between two epochs
        assert message.startswith("the evaluation of epoch "), message
