"""The API under load while a job trains: `wrk` (a second process, 32 connections, loopback, bounded in time)
against GET /v1/jobs/{id}, GET /v1/jobs and GET /v1/jobs/{id}/metrics?max_points=500 on a 100k-point
series, each right after the same load on a bare FastAPI endpoint (bench.bare_app, served by uvicorn as the
API is), in the same run.

    .venv/bin/python -m bench.api_load [--seconds 5] [--connections 32] [--points 100000]

The API runs as `nnforge serve` runs it (one uvicorn process, PostgreSQL, Redis, auth on: every request
looks its bearer token up; the per-owner rate limit is raised so that it does not answer 429). The worker
trains a long MLP meanwhile. The owner has 50 finished jobs besides (a full first page of GET /v1/jobs).
Targets: job status ≥ 0.5× the bare endpoint's requests/s with p99 ≤ 3× its own p50; the metrics read of a
100k-point series, alone, under 50 ms (20 sequential requests: the first, which scans the series, and the p50
of the others, which the API's cache of downsampled reads answers while the job row is unchanged).
"""

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx2
import sqlalchemy as sa

from app.client.serve import api_command
from app.db.base import utcnow
from app.db.job_state import JobStatus
from app.db.tables import Job, Metric
from bench.report import console, table, verdict
from bench.stack import Child, Stack, free_port, insert_jobs, machine, service_stack, wait_for

TRAINING_JOB = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [128, 64]},
    "training": {"epochs": 1000, "device": "cpu"},
}
TARGET_STATUS_VS_BARE = 0.5
TARGET_TAIL = 3.0
TARGET_METRICS_MS = 50.0
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(url: str, token: str | None, seconds: float, connections: int) -> Load:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s", url]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert found, out
        return float(found[1]) * UNITS[found[2]]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    errors = (int(bad[1]) if bad else 0) + (sum(int(n) for n in socket.groups()) if socket else 0)
    return Load(float(rps[1]), latency("50"), latency("99"), errors)


def metrics_job(stack: Stack, client: httpx2.Client, points: int) -> str:
    """A (cancelled) job with a `loss` series of `points` steps, written straight into the table."""
    job_id = client.post("/v1/jobs", json=TRAINING_JOB | {"name": "metrics"}).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    now = utcnow()
    with stack.factory() as session, session.begin():
        for start in range(1, points + 1, 20_000):
            rows = [
                {
                    "job_id": job_id,
                    "name": "loss",
                    "step": s,
                    "epoch": 1 + s // 100,
                    "value": 1 / s,
                    "time": now,
                }
                for s in range(start, min(points + 1, start + 20_000))
            ]
            session.execute(sa.insert(Metric), rows)
    return job_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--points", type=int, default=100_000, help="points in the metrics series")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    overrides = {"rate_limit_per_second": 1e9, "rate_limit_burst": 10**9}
    with service_stack(**overrides) as stack, stack.client() as client:
        bare_port = free_port()
        bare_settings = stack.settings.model_copy(update={"port": bare_port})
        command = [
            c.replace("app.api.main:create_app", "bench.bare_app:create_app")
            for c in api_command(stack.settings)
        ]
        command[command.index(str(stack.settings.port))] = str(bare_port)
        bare = Child(command, bare_settings, stack.folder / "bare.log")
        try:
            bare_url = f"http://127.0.0.1:{bare_port}/bare"
            wait_for(lambda: _answers(bare_url), timeout=60, interval=0.1, what="the bare endpoint")
            rows, first, again = _measure(stack, client, bare_url, args)
        finally:
            bare.stop()
    console.print(
        table(
            f"API under load while a job trains: wrk, {args.connections} connections, {args.seconds:g} s "
            "per run, each endpoint right after the bare one",
            [
                "endpoint",
                "req/s",
                "p50 ms",
                "p99 ms",
                "bare req/s",
                "bare p99/p50",
                "vs bare",
                "p99/p50",
                "target",
            ],
            rows,
            machine(),
        )
    )
    cold, warm = verdict(first < TARGET_METRICS_MS), verdict(again < TARGET_METRICS_MS)
    console.print(
        f"metrics read of a {args.points:,}-point series with max_points=500, alone (target < "
        f"{TARGET_METRICS_MS:.0f} ms): first {first:.0f} ms ({cold}), then p50 {again:.1f} ms ({warm})"
    )


def _answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


def _measure(
    stack: Stack, client: httpx2.Client, bare_url: str, args: argparse.Namespace
) -> tuple[list[list[str]], float, float]:
    insert_jobs(stack.factory, owner="bench", count=50)
    series_job = metrics_job(stack, client, args.points)
    training = client.post("/v1/jobs", json=TRAINING_JOB | {"name": "training"}).json()["id"]
    wait_for(
        lambda: client.get(f"/v1/jobs/{training}").json()["status"] == JobStatus.RUNNING,
        timeout=120,
        interval=0.2,
        what="the training job",
    )
    metrics_path = f"/v1/jobs/{series_job}/metrics?name=loss&max_points=500"
    single = []  # the first read scans the series; the later ones find it in the API's cache of reads
    for _ in range(20):
        started = time.perf_counter()
        response = client.get(metrics_path)
        single.append(1000 * (time.perf_counter() - started))
        response.raise_for_status()
    assert len(response.json()["series"]["loss"]) <= 500
    endpoints = {
        "GET /v1/jobs/{id}": f"/v1/jobs/{training}",
        "GET /v1/jobs": "/v1/jobs",
        "GET …/metrics?max_points=500": metrics_path,
    }
    rows = []
    for name, path in endpoints.items():
        base = run_wrk(bare_url, None, args.seconds, args.connections)
        load = run_wrk(stack.url + path, stack.token, args.seconds, args.connections)
        ratio, tail = load.rps / base.rps, load.p99_ms / load.p50_ms
        target = ""
        if name == "GET /v1/jobs/{id}":
            target = verdict(ratio >= TARGET_STATUS_VS_BARE and tail <= TARGET_TAIL)
        errors = f" ({load.errors} errors)" if load.errors or base.errors else ""
        rows.append(
            [
                name + errors,
                f"{load.rps:,.0f}",
                f"{load.p50_ms:.1f}",
                f"{load.p99_ms:.1f}",
                f"{base.rps:,.0f}",
                f"{base.p99_ms / base.p50_ms:.1f}",
                f"{ratio:.2f}",
                f"{tail:.1f}",
                target,
            ]
        )
    with stack.factory() as session:  # the job trained all along
        assert session.get_one(Job, training).status == JobStatus.RUNNING
    client.post(f"/v1/jobs/{training}/cancel")
    return rows, single[0], statistics.median(single[1:])


if __name__ == "__main__":
    main()
