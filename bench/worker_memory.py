"""Worker resident memory over consecutive jobs: it must stay flat (no growth per job).

    .venv/bin/python -m bench.worker_memory [--jobs 20]

One worker (PostgreSQL, Redis) runs `--jobs` MLP jobs on digits one after the other. After each job, once the
worker is idle, the resident memory (VmRSS) of its long-lived processes is read: the Celery main process and
its pool process. The standby training process (a fresh one per job) is reported apart. Flat: the long-lived
processes grow by less than 5 % (or 10 MiB) from job 2 to the last.
"""

import argparse
from pathlib import Path

import httpx2
from sqlalchemy import select

from app.db.job_state import TERMINAL
from app.db.tables import Job
from bench.report import console, table, verdict
from bench.stack import Stack, machine, rss_bytes, service_stack, wait_for, wait_idle

JOB = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [128, 64]},
    "training": {"epochs": 3, "device": "cpu"},
}
MIB = 2**20


def processes(worker_pid: int) -> tuple[list[int], list[int]]:
    """(the worker's long-lived processes, its training and standby processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    pool = children.get(worker_pid, [])
    trainers = [t for p in pool for t in children.get(p, [])]
    return [worker_pid, *pool], trainers


def run_job(stack: Stack, client: httpx2.Client) -> None:
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]

    def ended() -> bool:
        with stack.factory() as session:
            return session.scalar(select(Job.status).where(Job.id == job_id)) in TERMINAL

    wait_for(ended, timeout=300, interval=0.1, what=f"job {job_id}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args(argv)
    samples: list[tuple[int, int, int]] = []  # (job, long-lived bytes, standby bytes)
    with service_stack() as stack, stack.client() as client:
        assert stack.worker_pid is not None
        for job in range(1, args.jobs + 1):
            run_job(stack, client)
            wait_idle(stack.worker_pid)
            long_lived, trainers = processes(stack.worker_pid)
            samples.append((job, rss_bytes(long_lived), rss_bytes(trainers)))
    shown = sorted({1, 2, 5, 10, 15, args.jobs} & {s[0] for s in samples})
    rows = [[str(j), f"{lived / MIB:.1f}", f"{spare / MIB:.1f}"] for j, lived, spare in samples if j in shown]
    second, last = samples[min(1, len(samples) - 1)][1], samples[-1][1]
    growth = last - second
    flat = growth < max(0.05 * second, 10 * MIB)
    rows.append(
        [
            f"growth, job 2 → {args.jobs}",
            f"{growth / MIB:+.1f} MiB ({100 * growth / second:+.1f} %)",
            verdict(flat),
        ]
    )
    console.print(
        table(
            f"Worker resident memory after each of {args.jobs} consecutive jobs, MiB",
            ["after job", "worker main + pool process", "standby training process"],
            rows,
            machine(),
        )
    )


if __name__ == "__main__":
    main()
