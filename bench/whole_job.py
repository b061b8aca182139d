"""What a user pays for a job: POST → succeeded on the default settings, per template, against a plain script
that trains the same epochs and evaluates the same splits, with no service.

    .venv/bin/python -m bench.whole_job [--rounds 3] [--epochs N] [--template mlp cnn ...]

`bench.service_throughput` times the steady window between two epoch lines (no validation, one checkpoint);
this one times everything: POST, the dry run, dispatch, the claim, data loading, training with the default
validation split evaluated every epoch, the default checkpoints, the test split, the final writes.

Every template of `models.templates` is used as it is (its dataset, network, optimizer, and the default
training settings: validation and test splits, `training.checkpoint` as it ships (a time-based schedule),
the learning rate logged per step), except that `--epochs` caps its epochs. Four variants train each spec:

* plain    - the benchmarks' baseline loop (`bench.baseline`) on a run assembled as fit() assembles it, plus
             the procedure's evaluation of the validation split after every epoch and of the test split at
             the end: in this process, from `load_raw` on, timed to the test score;
* fit      - `fit(spec)` in this process, a clock its only hook: what fit() adds (step metrics, the best
             epoch's test score, the checkpoints it builds, a generator's samples per epoch), no service;
* SQLite   - the job POSTed to the embedded default (SQLite, the filesystem broker);
* Postgres - the job POSTed to Redis + PostgreSQL.

A job is timed from the client's clock just before the POST to the job row's `finished_at` (the worker's
clock; one machine): the moment the outcome is recorded after the last write. A client sees it at its next
poll or event (the API's status cache, `STATUS_CACHE_SECONDS`, may add up to 0.5 s); that wait is left out.
Both stacks run side by side, each worker with one slot (`bench.stack.start_worker`) and its standby
training process, TORCH_THREADS=1 and the default TRAINER_NICE; this process trains with 1 torch thread,
not niced: where other tenants load the cores, the job's training yields to them and the plain loop does not.
Each round runs the four variants of one template back to back, the order rotated every round, each after
both workers are idle; ratios are medians (range) of the per-round ratios. Before the rounds each stack runs
one untimed job and this process trains each template once: the timed runs are warm.

Where the time goes, from epoch ends (the job log's "epoch i/N" lines; a hook's or the loop's clock here):
queue = POST → running (the claim's `started_at`); setup = from then (in this process, from the start) to the
end of epoch 1 less one epoch: loading the data, assembling the run; epoch = the median epoch: training,
validation and, for fit() and jobs, the step metrics and any checkpoint; rest = after the last epoch's end:
the final checkpoint and writes (the plain loop's test score; fit() scores the test split in its last
epoch). total ≈ queue + setup + epochs × epoch + rest, up to the epochs' spread about their median.
"""

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
import torch

from bench.baseline import plain_epochs, plain_run
from bench.report import console, ratio_cell, table
from bench.service_throughput import run_job
from bench.stack import Stack, machine, service_stack, wait_idle
from models.assemble import Run
from models.procedures import EvalContext
from models.specs import JobSpec, parse_job_spec
from models.templates import TEMPLATES
from models.train import EpochReport, Hook, fit

VARIANTS = ("plain", "fit", "SQLite", "Postgres")
JOBS = {"SQLite": "embedded", "Postgres": "postgres"}  # job variant -> its stack


@dataclass
class Timing:
    """One run: seconds from its start (the POST for a job) to each epoch's end and to its end."""

    total: float
    epoch_ends: list[float]
    queue: float = 0.0  # POST → running; 0 in this process

    @property
    def epoch(self) -> float:
        spans = [b - a for a, b in itertools.pairwise(self.epoch_ends)]
        return statistics.median(spans) if spans else 0.0

    @property
    def setup(self) -> float:
        return self.epoch_ends[0] - self.queue - self.epoch

    @property
    def rest(self) -> float:
        return self.total - self.epoch_ends[-1]


@dataclass
class PlainRun:
    timing: Timing
    val_metrics: list[dict[str, float]]  # per epoch
    test_metrics: dict[str, float]


def job_spec(template: str, epochs: int | None = None) -> JobSpec:
    """The template as it is, its epochs capped at `epochs`."""
    spec = parse_job_spec(TEMPLATES[template])
    if epochs is None or epochs >= spec.training.epochs:
        return spec
    return spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": epochs})})


def evaluate(run: Run, split: str) -> dict[str, float]:
    """The procedure's evaluation of a split, with the context fit() gives it (its own seeded generator)."""
    data = run.data
    if not data.size(split):
        return {}
    context = EvalContext(
        model=run.model,
        task=data.info.task,
        spec=run.spec.model,
        autocast=run.autocast,
        denormalize=data.denormalize,
        quality=data.quality,
        generator=torch.Generator(device=run.device).manual_seed(run.spec.training.seed + 1),
    )
    run.model.eval()
    try:
        return run.procedure.evaluate(context, data.x[split], data.y[split])
    finally:
        run.model.train()


def plain_with_validation(spec: JobSpec) -> PlainRun:
    """The plain loop, the validation split evaluated after every epoch and the test split at the end."""
    started = time.perf_counter()
    run = plain_run(spec)
    epoch = plain_epochs(run)
    ends, val = [], []
    for _ in range(spec.training.epochs):
        epoch()
        val.append(evaluate(run, "val"))
        ends.append(time.perf_counter() - started)
    test = evaluate(run, "test")
    return PlainRun(Timing(time.perf_counter() - started, ends), val, test)


class _EpochClock(Hook):
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.ends: list[float] = []

    def on_epoch(self, report: EpochReport) -> None:
        self.ends.append(time.perf_counter() - self.started)


def time_fit(spec: JobSpec) -> Timing:
    clock = _EpochClock()
    fit(spec, hook=clock)
    return Timing(time.perf_counter() - clock.started, clock.ends)


def time_job(stack: Stack, client: httpx2.Client, spec: JobSpec) -> Timing:
    times = run_job(stack, client, spec)
    return Timing(
        times.finished - times.posted,
        [end - times.posted for end in times.epoch_ends],
        queue=times.running - times.posted,
    )


@dataclass
class TemplateResult:
    template: str
    epochs: int
    timings: dict[str, list[Timing]] = field(default_factory=lambda: {v: [] for v in VARIANTS})

    def median(self, variant: str, phase: Callable[[Timing], float]) -> float:
        return statistics.median(phase(t) for t in self.timings[variant])

    def ratios(self, a: str, b: str) -> list[float]:
        pairs = zip(self.timings[a], self.timings[b], strict=True)
        return [x.total / y.total for x, y in pairs]


def measure(
    stacks: dict[str, tuple[Stack, httpx2.Client]], templates: list[str], rounds: int, epochs: int | None
) -> list[TemplateResult]:
    def idle() -> None:  # both workers, e.g. the standby process the last job left starting
        for stack, _ in stacks.values():
            wait_idle(stack.worker_pid or 0)

    def run(variant: str, spec: JobSpec) -> Timing:
        if variant == "plain":
            return plain_with_validation(spec).timing
        if variant == "fit":
            return time_fit(spec)
        return time_job(*stacks[JOBS[variant]], spec)

    for stack, client in stacks.values():  # the first job after a worker starts is cold
        run_job(stack, client, job_spec("mlp", 1))
    for template in templates:
        time_fit(job_spec(template, 1))
    results = [TemplateResult(t, job_spec(t, epochs).training.epochs) for t in templates]
    for r in range(rounds):
        for result in results:
            spec = job_spec(result.template, epochs)
            for variant in VARIANTS[r % 4 :] + VARIANTS[: r % 4]:
                idle()
                result.timings[variant].append(run(variant, spec))
    return results


def render(results: list[TemplateResult], rounds: int, info: str) -> None:
    rows = [
        [
            res.template,
            str(res.epochs),
            *(f"{res.median(v, lambda t: t.total):.2f}" for v in VARIANTS),
            *(ratio_cell(res.ratios(v, "plain")) for v in VARIANTS[1:]),
        ]
        for res in results
    ]
    columns = ["template", "epochs", "plain s", "fit s", "SQLite job s", "Postgres job s"]
    columns += ["fit ÷ plain", "SQLite ÷ plain", "Postgres ÷ plain"]
    title = (
        f"A whole job on the default settings against a plain loop with validation, seconds (median of "
        f"{rounds} rounds; ratios: median (min–max) of the per-round ratios)"
    )
    console.print(table(title, columns, rows, info))
    phases: dict[str, Callable[[Timing], float]] = {
        "queue": lambda t: t.queue,
        "setup": lambda t: t.setup,
        "epoch ms": lambda t: 1000 * t.epoch,
        "rest": lambda t: t.rest,
        "total": lambda t: t.total,
    }
    rows = [
        [res.template if v == VARIANTS[0] else "", v]
        + [f"{res.median(v, phase):.{0 if name == 'epoch ms' else 3}f}" for name, phase in phases.items()]
        for res in results
        for v in VARIANTS
    ]
    title = (
        "Where the time goes, seconds (medians; total ≈ queue + setup + epochs × epoch + rest): queue = "
        "POST → running, setup = to the end of epoch 1 less an epoch, rest = after the last epoch's end"
    )
    console.print(table(title, ["template", "variant", *phases], rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four variants per template")
    parser.add_argument("--epochs", type=int, default=None, help="at most this many epochs per template")
    parser.add_argument("--template", choices=list(TEMPLATES), nargs="+", default=list(TEMPLATES))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    with (
        service_stack(embedded=True) as embedded,
        service_stack() as postgres,
        embedded.client() as embedded_client,
        postgres.client() as postgres_client,
    ):
        stacks = {"embedded": (embedded, embedded_client), "postgres": (postgres, postgres_client)}
        results = measure(stacks, args.template, args.rounds, args.epochs)
    render(results, args.rounds, f"{machine()} (1-min load at the start {load:.1f})")


if __name__ == "__main__":
    main()
