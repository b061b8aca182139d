"""/metrics (HTTP and job gauges) and the request id, from the API's response header into the worker's
log lines of the job it queued."""

import re
import uuid

import httpx2
from fastapi.testclient import TestClient
from live_stack import LiveStack
from support import wait_for

SPEC = {"dataset": {"name": "moons"}, "model": {"arch": "mlp", "hidden_sizes": [4]},
        "training": {"epochs": 1}}


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
