"""How submit and list costs grow with the jobs in the database: 10, 100, 1,000 and 10,000.

    .venv/bin/python -m bench.scale [--sizes 10 100 1000 10000] [--requests 20]

One API on PostgreSQL (no worker: submitted jobs stay queued). Finished jobs of the same owner are inserted
straight into the table up to each size, each tagged `sweep-<i % 10>` and all but every tenth with a
val_accuracy; then, sequentially over HTTP, p50 of: POST /v1/jobs (validation, dry run, the owner's
queued-jobs count, insert, publish), GET /v1/jobs (the first page of 50), GET /v1/jobs?cursor= (a page of
50 from the middle: keyset pagination), GET /v1/jobs?status=queued, a filtered page (a tag a tenth of the
jobs carry, and the optimizer), a name no job has (the one filter without an index), pages sorted by the
best val_accuracy (the first, and one from the middle), GET /v1/jobs/{id}.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import httpx2
from sqlalchemy import func, select

from app.api.job_lists import JobSort, Position, encode_cursor
from app.db.tables import Job, JobBestMetric
from bench.report import console, table
from bench.stack import Stack, insert_jobs, machine, service_stack

SUBMIT = {"dataset": {"name": "digits"}, "model": {"arch": "mlp"}, "training": {"epochs": 1}}
BY_ACCURACY = "-best.val_accuracy"


def p50_ms(request: Callable[[], httpx2.Response], count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = request()
        times.append(1000 * (time.perf_counter() - started))
        assert response.status_code < 300, response.text
    return statistics.median(times)


def middle_cursor(stack: Stack) -> str:
    with stack.factory() as session:
        total = session.scalar(select(func.count()).select_from(Job)) or 0
        job = session.execute(
            select(Job.created_at, Job.id).order_by(Job.created_at.desc(), Job.id.desc()).offset(total // 2)
        ).first()
    assert job is not None
    return encode_cursor(JobSort.parse("-created"), Position(True, job.created_at, job.id))


def middle_cursor_by_accuracy(stack: Stack) -> str:
    metric = JobBestMetric
    with stack.factory() as session:
        total = session.scalar(select(func.count()).select_from(metric).where(metric.name == "val_accuracy"))
        row = session.execute(
            select(metric.value, metric.job_id)
            .where(metric.name == "val_accuracy")
            .order_by(metric.value.desc(), metric.job_id.desc())
            .offset((total or 0) // 2)
        ).first()
    assert row is not None
    return encode_cursor(JobSort.parse(BY_ACCURACY), Position(True, row.value, row.job_id))


def measure(stack: Stack, client: httpx2.Client, requests: int) -> dict[str, float]:
    queued = client.post("/v1/jobs", json=SUBMIT).json()["id"]
    cursor, by_accuracy = middle_cursor(stack), middle_cursor_by_accuracy(stack)
    filtered = {"tag": "sweep-3", "optimizer": "adam"}
    return {
        "POST /v1/jobs": p50_ms(lambda: client.post("/v1/jobs", json=SUBMIT), requests // 2),
        "GET /v1/jobs": p50_ms(lambda: client.get("/v1/jobs"), requests),
        "GET /v1/jobs?cursor= (middle)": p50_ms(
            lambda: client.get("/v1/jobs", params={"cursor": cursor}), requests
        ),
        "GET /v1/jobs?status=queued": p50_ms(lambda: client.get("/v1/jobs?status=queued"), requests),
        "GET /v1/jobs?tag=sweep-3&optimizer=adam": p50_ms(
            lambda: client.get("/v1/jobs", params=filtered), requests
        ),
        "GET /v1/jobs?name=nomatch (no index: reads every job)": p50_ms(
            lambda: client.get("/v1/jobs", params={"name": "nomatch"}), requests
        ),
        f"GET /v1/jobs?sort={BY_ACCURACY}": p50_ms(
            lambda: client.get("/v1/jobs", params={"sort": BY_ACCURACY}), requests
        ),
        f"GET /v1/jobs?sort={BY_ACCURACY}&cursor= (middle)": p50_ms(
            lambda: client.get("/v1/jobs", params={"sort": BY_ACCURACY, "cursor": by_accuracy}), requests
        ),
        "GET /v1/jobs/{id}": p50_ms(lambda: client.get(f"/v1/jobs/{queued}"), requests),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--requests", type=int, default=20, help="requests per measurement")
    args = parser.parse_args(argv)
    results: dict[int, dict[str, float]] = {}
    overrides = {"rate_limit_per_second": 1e9, "rate_limit_burst": 10**9, "max_queued_jobs_per_owner": 10**6}
    with service_stack(worker=False, **overrides) as stack, stack.client() as client:
        client.post("/v1/jobs", json=SUBMIT).raise_for_status()  # the API imports torch for its first dry run
        for size in sorted(args.sizes):
            with stack.factory() as session:
                present = session.scalar(select(func.count()).select_from(Job)) or 0
            insert_jobs(stack.factory, owner="bench", count=max(0, size - present), labelled=True)
            results[size] = measure(stack, client, args.requests)
    first = results[min(results)]
    rows = [
        [
            name,
            *(f"{results[size][name]:.1f}" for size in results),
            f"{results[max(results)][name] / first[name]:.2f}×",
        ]
        for name in first
    ]
    console.print(
        table(
            f"Request time against the jobs in the database, p50 ms of {args.requests} sequential requests",
            ["request", *(f"{size:,} jobs" for size in results), f"{max(results):,} vs {min(results):,}"],
            rows,
            machine(),
        )
    )


if __name__ == "__main__":
    main()
