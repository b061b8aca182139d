"""Back-to-back small jobs: 20 jobs of about a second each, POSTed at once, on one worker slot and on two.

    .venv/bin/python -m bench.back_to_back [--jobs 20] [--epochs 40] [--broker redis embedded]

A job's training time is its row's `finished_at − started_at` (claim to final status: data, training,
validation, checkpoints, the final writes). The wall time runs from the first POST (the client's clock, same
machine) to the last `finished_at`. Targets: wall ≤ 1.2 × the sum of training times with one slot (the
next job's process is ready when a job ends); ≤ 0.65 × with two slots on two cores.
"""

import argparse
import time

from app.db.job_state import TERMINAL, JobStatus
from app.db.tables import Job
from bench.report import console, table, verdict
from bench.stack import machine, service_stack, wait_for, wait_idle

TARGETS = {1: 1.2, 2: 0.65}


def small_job(epochs: int) -> dict:
    return {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [64]},
        "training": {"epochs": epochs, "device": "cpu"},
    }


def measure(*, embedded: bool, slots: int, jobs: int, epochs: int) -> tuple[float, float]:
    """(wall seconds, sum of training seconds) for `jobs` jobs POSTed at once."""
    with service_stack(embedded=embedded, worker_concurrency=slots) as stack, stack.client() as client:
        warm_up = client.post("/v1/jobs", json=small_job(1))  # warms the API's dry run and a worker
        assert warm_up.status_code == 202, warm_up.text
        wait_for(lambda: _all_ended(stack), timeout=120, interval=0.1, what="the warm-up job")
        assert stack.worker_pid is not None
        wait_idle(stack.worker_pid, window=0.5)
        started = time.time()
        ids = [client.post("/v1/jobs", json=small_job(epochs)).json()["id"] for _ in range(jobs)]
        rows = wait_for(lambda: _all_ended(stack, ids), timeout=600, interval=0.1, what=f"{jobs} jobs")
    assert all(job.status == JobStatus.SUCCEEDED for job in rows), [job.error_message for job in rows]
    training = sum(job.finished_at.timestamp() - job.started_at.timestamp() for job in rows)  # type: ignore[union-attr]
    wall = max(job.finished_at.timestamp() for job in rows) - started  # type: ignore[union-attr]
    return wall, training


def _all_ended(stack, ids: list[str] | None = None) -> list[Job] | None:  # type: ignore[no-untyped-def]
    with stack.factory() as session:
        query = session.query(Job) if ids is None else session.query(Job).filter(Job.id.in_(ids))
        rows = query.all()
    return rows if rows and all(job.status in TERMINAL for job in rows) else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=40, help="about a second of training on digits")
    parser.add_argument("--broker", choices=("redis", "embedded"), nargs="+", default=["redis", "embedded"])
    args = parser.parse_args(argv)
    rows = []
    for broker in args.broker:
        label = "Redis + PostgreSQL" if broker == "redis" else "filesystem + SQLite"
        for slots, target in TARGETS.items():
            wall, training = measure(
                embedded=broker == "embedded", slots=slots, jobs=args.jobs, epochs=args.epochs
            )
            ratio = wall / training
            rows.append(
                [
                    label,
                    str(slots),
                    f"{training / args.jobs:.2f}",
                    f"{training:.1f}",
                    f"{wall:.1f}",
                    f"{ratio:.2f}",
                    f"≤ {target}",
                    verdict(ratio <= target),
                ]
            )
    console.print(
        table(
            f"{args.jobs} back-to-back jobs POSTed at once (digits MLP, {args.epochs} epochs)",
            ["broker + database", "slots", "train s/job", "Σ train s", "wall s", "wall ÷ Σ", "target", ""],
            rows,
            machine(),
        )
    )


if __name__ == "__main__":
    main()
