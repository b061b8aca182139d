"""/metrics (HTTP and job gauges) and the request id, from the API's response header into the worker's
log lines of the job it queued."""

import re
import uuid

import httpx2
from fastapi.testclient import TestClient
from live_stack import LiveStack
from sqlalchemy import update
from support import wait_for

from app.db.base import utcnow
from app.db.tables import Job

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not in /metrics"
    return float(match.group(1))


def test_metrics_count_requests_by_route_and_jobs_by_status(client: TestClient) -> None:
    before = _sample(client.get("/metrics").text, "nnforge_jobs", status="queued")
    job = client.post("/v1/jobs", json=SPEC).json()
    client.get(f"/v1/jobs/{job['id']}")
    text = client.get("/metrics").text
    assert _sample(text, "nnforge_jobs", status="queued") == before + 1
    assert _sample(text, "nnforge_queue_depth", queue="any") >= 1
    assert _sample(text, "http_requests_total", handler="/v1/jobs/{job_id}", method="GET", status="2xx") >= 1


def _set_job(client: TestClient, job_id: str, **values: object) -> None:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()


def test_metrics_export_the_latest_epoch_timing_of_running_jobs_only(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=SPEC).json()["id"]
    assert f'job_id="{job_id}"' not in client.get("/metrics").text  # queued: no epoch yet
    # What the worker's hook writes at an epoch's end (tests/service/test_end_to_end.py checks it does).
    _set_job(
        client,
        job_id,
        status="running",
        heartbeat_at=utcnow(),
        epoch=1,
        epoch_seconds=0.25,
        samples_per_second=5600.0,
    )
    text = client.get("/metrics").text
    assert _sample(text, "nnforge_job_epoch_seconds", arch="mlp", job_id=job_id) == 0.25
    assert _sample(text, "nnforge_job_samples_per_second", arch="mlp", job_id=job_id) == 5600.0
    _set_job(client, job_id, status="succeeded", finished_at=utcnow())
    assert f'job_id="{job_id}"' not in client.get("/metrics").text  # a finished job's series go away


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    assert client.get("/livez", headers={"X-Request-ID": "trace-1"}).headers["x-request-id"] == "trace-1"
    made = client.get("/livez", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_request_id_reaches_the_training_process_log(live_stack: LiveStack) -> None:
    rid = f"trace-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {live_stack.token}", "X-Request-ID": rid}
    job_id = httpx2.post(f"{live_stack.url}/v1/jobs", json=SPEC, headers=headers, timeout=30).json()["id"]

    def first_line() -> str | None:
        lines = httpx2.get(f"{live_stack.url}/v1/jobs/{job_id}/logs", headers=headers, timeout=10).json()
        return lines["items"][0]["message"] if lines["items"] else None

    line = wait_for(first_line, timeout=120, what="the job's first log line")
    assert f"(request {rid})" in line, line
