"""Training throughput through the whole service (API → Redis → worker → PostgreSQL) against `fit()` called
directly and a plain hand-written PyTorch loop, and the service's start-up (POST → first step).

    .venv/bin/python -m bench.service_throughput [--rounds 3] [--seconds 1.5] [--startup-jobs 7]

Throughput. The three variants train the same spec (`bench.train_throughput.bench_spec`: the starter
template, no validation or test split, one checkpoint at the end, 1 warm-up epoch then E timed epochs), one
after the other, the order rotated every round, so each round is a paired comparison. `fit` and `plain` are
timed by `bench.train_throughput` in this process (1 torch thread). The service job is POSTed to the API and
trains in the worker's training process (TORCH_THREADS=1, HEARTBEAT_SECONDS=1, its metric rows written in
batches); its span is read back from the database: the job log's "epoch i/N" lines, which the DatabaseHook
logs in `on_epoch` and which keep the time they were logged, of the warm-up epoch and of the last one.
Ratios are medians of the per-round ratios. Target: service ≥ 0.95× the plain loop.

Start-up. On an idle, warm worker (its process tree quiet, any standby training process ready), a 3-epoch MLP
job is POSTed; from the client's clock and the job's rows: POST → 202, POST → running (the training process
claimed the row), POST → first step (the end of epoch 1 minus one steady epoch, from the epoch lines).
p50 over `--startup-jobs` jobs. Target: p50 of POST → first step < 0.5 s.
"""

import argparse
import math
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx2
import torch
from sqlalchemy import select
from torch import Tensor

from app.db.job_logs import JobLog
from app.db.job_state import TERMINAL, JobStatus
from app.db.tables import Job
from bench.report import console, percentile, ratio_cell, table, verdict
from bench.stack import Stack, machine, service_stack, wait_for, wait_idle
from bench.train_throughput import bench_spec, time_fit, time_plain
from models.data import prepare
from models.datasets import load_raw
from models.specs import JobSpec

ARCHS = ("mlp", "cnn", "rnn", "gan")
VARIANTS = ("service", "fit", "plain")
TARGET_SERVICE_VS_PLAIN = 0.95
TARGET_STARTUP_P50 = 0.5
STARTUP_EPOCHS = 2  # timed epochs after the warm-up one: three epoch lines to time the first step from
EPOCH_LINE = re.compile(r" epoch (\d+)/\d+ ")


@dataclass
class JobTimes:
    posted: float  # client wall clock, seconds since the epoch
    accepted: float
    running: float
    epoch_ends: list[float]  # epoch 1, 2, ...
    finished: float  # the row's finished_at

    @property
    def first_step(self) -> float:
        """The end of epoch 1 minus one steady epoch (the mean of the later ones)."""
        ends = self.epoch_ends
        return ends[0] - (ends[-1] - ends[0]) / (len(ends) - 1)


@dataclass
class ArchResult:
    arch: str
    epochs: int
    samples: int
    rates: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})

    def ratios(self, a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(self.rates[a], self.rates[b], strict=True)]


def _timestamp(value: datetime | None) -> float:
    assert value is not None
    return value.timestamp()


def run_job(stack: Stack, client: httpx2.Client, spec: JobSpec, *, timeout: float = 600) -> JobTimes:
    """POST a job on an idle worker, wait for it to succeed, and read its times back."""
    wait_idle(stack.worker_pid or 0)
    posted = time.time()
    response = client.post("/v1/jobs", json=spec.model_dump(mode="json"))
    accepted = time.time()
    response.raise_for_status()
    job_id = response.json()["id"]

    def finished() -> str | None:
        with stack.factory() as session:
            status = session.scalar(select(Job.status).where(Job.id == job_id))
        return status if status in TERMINAL else None

    status = wait_for(finished, timeout=timeout, interval=0.1, what=f"job {job_id}")
    with stack.factory() as session:
        job = session.get_one(Job, job_id)
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"job {job_id} {status}: {job.error_message}")

    def epoch_ends() -> dict[int, float] | None:  # the log's last lines land just after the status
        with stack.factory() as session:
            lines = session.execute(select(JobLog.message, JobLog.time).where(JobLog.job_id == job_id)).all()
        ends = {int(m[1]): _timestamp(t) for message, t in lines if (m := EPOCH_LINE.search(message))}
        return ends if len(ends) == spec.training.epochs else None

    ends = wait_for(epoch_ends, timeout=30, interval=0.1, what=f"the epoch lines of job {job_id}")
    assert ends is not None
    return JobTimes(
        posted,
        accepted,
        _timestamp(job.started_at),
        [ends[e] for e in sorted(ends)],
        _timestamp(job.finished_at),
    )


def measure_startup(stack: Stack, client: httpx2.Client, jobs: int) -> list[JobTimes]:
    spec = bench_spec("mlp", STARTUP_EPOCHS)
    run_job(stack, client, spec)  # the first job after the worker starts is cold: not counted
    return [run_job(stack, client, spec) for _ in range(jobs)]


def measure_arch(stack: Stack, client: httpx2.Client, arch: str, rounds: int, seconds: float) -> ArchResult:
    assert stack.worker_pid is not None
    spec = bench_spec(arch, 1)
    raw = load_raw(spec.dataset)
    data = prepare(raw, spec.model.problem(raw.info), spec.training, torch.device("cpu"))
    x, y = data.x["train"], data.y["train"]
    epoch_seconds = time_plain(spec, x, y, 2)[0] / 2
    epochs = max(2, min(500, math.ceil(seconds / epoch_seconds)))
    spec = bench_spec(arch, epochs)
    result = ArchResult(arch, epochs, len(x))

    def service(spec: JobSpec, x: Tensor, y: Tensor | None, epochs: int) -> float:
        ends = run_job(stack, client, spec).epoch_ends  # waits for an idle worker itself
        assert len(ends) == epochs + 1, ends
        return ends[-1] - ends[0]

    timers: dict[str, Callable[[JobSpec, Tensor, Tensor | None, int], float]] = {
        "service": service,
        "fit": lambda *args: time_fit(*args)[0],
        "plain": lambda *args: time_plain(*args)[0],
    }
    for r in range(rounds):
        for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
            wait_idle(stack.worker_pid)  # e.g. the standby process the last job left starting
            result.rates[variant].append(epochs * len(x) / timers[variant](spec, x, y, epochs))
    return result


def render(results: list[ArchResult], startup: list[JobTimes], rounds: int, info: str) -> None:
    rows = []
    for res in results:
        service_plain = res.ratios("service", "plain")
        rows.append(
            [
                res.arch,
                f"{res.epochs} × {res.samples}",
                *(f"{statistics.median(res.rates[v]):,.0f}" for v in VARIANTS),
                ratio_cell(service_plain),
                verdict(statistics.median(service_plain) >= TARGET_SERVICE_VS_PLAIN),
                ratio_cell(res.ratios("service", "fit")),
                ratio_cell(res.ratios("fit", "plain")),
            ]
        )
    console.print(
        table(
            f"Training phase, samples/s (median of {rounds} paired rounds; ratios: median (min–max))",
            [
                "arch",
                "epochs × samples",
                "service",
                "fit",
                "plain",
                "service/plain",
                "≥ 0.95",
                "service/fit",
                "fit/plain",
            ],
            rows,
            info,
        )
    )
    phases = {
        "POST → 202 accepted": [j.accepted - j.posted for j in startup],
        "POST → running (claimed)": [j.running - j.posted for j in startup],
        "POST → first step": [j.first_step - j.posted for j in startup],
    }
    rows = [
        [name, *(f"{percentile(v, q):.3f}" for q in (50, 90)), f"{max(v):.3f}"] for name, v in phases.items()
    ]
    p50 = percentile(phases["POST → first step"], 50)
    rows.append(["target: first step p50 < 0.5 s", verdict(p50 < TARGET_STARTUP_P50), "", ""])
    console.print(
        table(
            f"Start-up on an idle warm worker, seconds ({len(startup)} MLP jobs)",
            ["phase", "p50", "p90", "max"],
            rows,
            info,
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per architecture")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of a timed span (calibrated)")
    parser.add_argument("--startup-jobs", type=int, default=7, help="jobs timed for the start-up")
    parser.add_argument("--arch", choices=ARCHS, nargs="+", default=list(ARCHS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with service_stack(torch_threads=1) as stack, stack.client() as client:
        startup = measure_startup(stack, client, args.startup_jobs)
        results = [measure_arch(stack, client, arch, args.rounds, args.seconds) for arch in args.arch]
    render(results, startup, args.rounds, machine())


if __name__ == "__main__":
    main()
