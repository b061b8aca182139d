"""Throughput with one worker host against two: the same jobs, POSTed at once through the API host of the
cluster the tests build in network namespaces (tests/cluster/netns_cluster.py: needs root), run first on
`w1` alone, then on `w1` and `w2`. Wall time from the first POST to the last job's end.

    sudo .venv/bin/python -m bench.cluster [--jobs 8] [--epochs 10] [--rounds 1]

The target: two hosts ≥ 1.7× one. On a 2-core machine each host's training process has a core of its own
only while nothing else runs; the API, the database and the workers' own processes share them too.
"""

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
# The cluster harness of the tests, reused as it is (bench never rebuilds what it measures).
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "cluster"), str(ROOT / "tests" / "faults")]

from netns_cluster import DEFAULT_WORKER, Cluster, Service, Stack, usable  # noqa: E402

from app.api.tokens import create_token  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.db.engine import transaction  # noqa: E402
from app.db.job_state import TERMINAL, JobStatus  # noqa: E402
from bench.report import console, table  # noqa: E402


def job_spec(epochs: int, seed: int) -> dict[str, object]:
    return {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [64]},
        "optimizer": {"name": "momentum", "lr": 0.02},
        "training": {"epochs": epochs, "batch_size": 16, "seed": seed, "device": "cpu"},
    }


def run_batch(stack: Stack, jobs: int, epochs: int) -> tuple[float, set[str]]:
    """Seconds from the first POST to the last job's end, and the hosts that ran them."""
    started = time.monotonic()
    ids = []
    for i in range(jobs):
        answer = httpx2.post(
            f"{stack.url}/v1/jobs",
            json=job_spec(epochs, i) | {"name": f"bench-{i}"},
            headers=stack.headers,
            timeout=30,
        )
        if answer.status_code != 202:
            raise RuntimeError(f"POST /v1/jobs: {answer.status_code} {answer.text}")
        ids.append(answer.json()["id"])
    while True:
        rows = [httpx2.get(f"{stack.url}/v1/jobs/{i}", headers=stack.headers, timeout=30).json() for i in ids]
        if all(row["status"] in TERMINAL for row in rows):
            break
        time.sleep(0.1)
    bad = [row["status"] for row in rows if row["status"] != JobStatus.SUCCEEDED]
    if bad:
        raise RuntimeError(f"jobs ended {bad}")
    return time.monotonic() - started, {row["worker_host"] for row in rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    reason = usable()
    if reason is not None:
        sys.exit(f"cannot build the cluster: {reason}")
    cluster = Cluster()
    try:
        cluster.build()
        cluster.start_database_host()
        settings = Settings(database_url=cluster.database_url, redis_url=cluster.redis_url, auth=True,
                            rate_limit_per_second=1000, rate_limit_burst=1000,
                            dry_run_timeout_seconds=60)  # fmt: skip
        service = Service(cluster, settings)
        url = service.start_api()
        with transaction(service.factory) as session:
            token = create_token(session=session, owner=f"bench-{uuid.uuid4().hex[:6]}").secret
        stack = Stack(cluster, service, url, token)
        one, two = [], []
        for _ in range(args.rounds):  # interleaved: the machine's speed drifts
            stack.use(w1=DEFAULT_WORKER, w2=None)
            run_batch(stack, 2, 1)  # warm: each training process imports torch once
            seconds, hosts = run_batch(stack, args.jobs, args.epochs)
            one.append(seconds)
            stack.use(w2=DEFAULT_WORKER)
            run_batch(stack, 2, 1)
            seconds, hosts = run_batch(stack, args.jobs, args.epochs)
            two.append(seconds)
            if hosts != {"w1", "w2"}:
                raise RuntimeError(f"two hosts, but the jobs ran on {hosts}")
        ratio = statistics.median(a / b for a, b in zip(one, two, strict=True))
        verdict = "≥ 1.7 " + ("met" if ratio >= 1.7 else "missed")
        rows = [
            ["w1", f"{statistics.median(one):.1f}", "1.00", ""],
            ["w1 + w2", f"{statistics.median(two):.1f}", f"{ratio:.2f}", verdict],
        ]
        title = f"{args.jobs} jobs of {args.epochs} epochs (digits MLP), POST → last end"
        console.print(table(title, ["hosts", "wall s (median)", "speed-up", "target"], rows))
    finally:
        logs = Path(tempfile.mkdtemp(prefix="nnforge-bench-cluster-"))
        cluster.destroy(keep_logs=logs)
        console.print(f"the processes' logs: {logs}")


if __name__ == "__main__":
    main()
