"""A database outage costs time: the worker retries, the API answers 503 at once, nothing is lost."""

import time
from pathlib import Path

from fastapi.testclient import TestClient
from jobs import job_row, session_factory, steps_of, submit
from services import PrivatePostgres
from support import WorkerProcess, wait_for

from app.api.main import create_app
from app.core.settings import Settings

SPEC = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [128]},
    "training": {"epochs": 20, "batch_size": 16},
}
TOTAL_STEPS = 20 * 79
OUTAGE_SECONDS = 30


def test_postgres_down_for_30_s_mid_job_loses_no_metric(
    fault_settings: Settings, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    factory = session_factory(fault_settings)
    job_id = submit(fault_settings, SPEC)
    worker = WorkerProcess(fault_settings, tmp_path / "worker.log")
    try:
        wait_for(lambda: job_row(factory, job_id).epoch >= 2, timeout=120, interval=0.05, what="epoch 2")
        private_postgres.stop()
        answers = []
        with TestClient(create_app(fault_settings), raise_server_exceptions=False) as api:
            started = time.monotonic()
            while time.monotonic() - started < OUTAGE_SECONDS:
                asked = time.monotonic()
                response = api.get(f"/v1/jobs/{job_id}")
                answers.append((response.status_code, time.monotonic() - asked))
                time.sleep(1)
            private_postgres.start()
            job = wait_for(
                lambda: (j := api.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and j,
                timeout=240,
                interval=0.5,
                what="the job to finish after the outage",
            )
    finally:
        worker.stop()
    assert {code for code, _ in answers} == {503}
    assert max(seconds for _, seconds in answers) < 5  # it answers; it does not hang
    assert job["attempt"] == 1
    assert steps_of(factory, job_id) == list(range(1, TOTAL_STEPS + 1))
    assert len(steps_of(factory, job_id, "val_loss")) == 20
