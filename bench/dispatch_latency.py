"""Dispatch latency, POST → running, over many tiny jobs: with Redis and PostgreSQL, and with the embedded
broker (kombu's filesystem transport) and SQLite, as `make run` starts them.

    .venv/bin/python -m bench.dispatch_latency [--jobs 100] [--broker redis embedded]

Each job is a one-epoch MLP on digits, POSTed to an idle, warm worker (its process tree quiet, its standby
training process ready). `running` is the job row's `started_at`, which the training process sets when it
claims the job; POST is the client's clock just before sending it (same machine, same clock). Reported: p50,
p90, p99 and max of POST → 202 (the API: validation, dry run, insert, publish) and of POST → running.
"""

import argparse
import time

import httpx2
from sqlalchemy import select

from app.db.job_state import TERMINAL, JobStatus
from app.db.tables import Job
from bench.report import console, percentile, table
from bench.stack import Stack, machine, service_stack, wait_for, wait_idle

TINY_JOB = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [16]},
    "training": {"epochs": 1, "validation_fraction": 0, "test_fraction": 0, "device": "cpu"},
}


def one_job(stack: Stack, client: httpx2.Client) -> tuple[float, float]:
    """(POST → 202, POST → running) in seconds for one job on an idle worker."""
    assert stack.worker_pid is not None
    wait_idle(stack.worker_pid, window=0.3)
    posted = time.time()
    response = client.post("/v1/jobs", json=TINY_JOB)
    accepted = time.time()
    response.raise_for_status()
    job_id = response.json()["id"]

    def ended() -> Job | None:
        with stack.factory() as session:
            job = session.get_one(Job, job_id)
            return job if job.status in TERMINAL else None

    job = wait_for(ended, timeout=120, interval=0.05, what=f"job {job_id}")
    assert job.started_at is not None and job.status == JobStatus.SUCCEEDED, job.error_message
    return accepted - posted, job.started_at.timestamp() - posted


def measure(broker: str, jobs: int) -> dict[str, list[float]]:
    with service_stack(embedded=broker == "embedded") as stack, stack.client() as client:
        one_job(stack, client)  # the first job warms the API (it imports torch for the dry run)
        times = [one_job(stack, client) for _ in range(jobs)]
        with stack.factory() as session:  # every job ran once
            assert session.scalar(select(Job.id).where(Job.attempt != 1)) is None
    return {"POST → 202": [a for a, _ in times], "POST → running": [r for _, r in times]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs per broker")
    parser.add_argument("--broker", choices=("redis", "embedded"), nargs="+", default=["redis", "embedded"])
    args = parser.parse_args(argv)
    rows = []
    for broker in args.broker:
        label = "Redis + PostgreSQL" if broker == "redis" else "filesystem + SQLite"
        for phase, values in measure(broker, args.jobs).items():
            ms = [1000 * v for v in values]
            rows.append([label, phase, *(f"{percentile(ms, q):.0f}" for q in (50, 90, 99)), f"{max(ms):.0f}"])
    console.print(
        table(
            f"Dispatch latency on an idle warm worker, ms ({args.jobs} one-epoch jobs per broker)",
            ["broker + database", "phase", "p50", "p90", "p99", "max"],
            rows,
            machine(),
        )
    )


if __name__ == "__main__":
    main()
