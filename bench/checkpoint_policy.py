"""The checkpoint defaults against the job without checkpoints but its last, and against the old
one-checkpoint-an-epoch default: training time, checkpoints kept and bytes stored per template job.

    .venv/bin/python -m bench.checkpoint_policy [--rounds 3] [--epochs N] [--broker redis embedded]

Three variants of each template's job (`models.templates`, as they are but for `--epochs`), interleaved in
every round on one stack, each on an idle worker with one slot:

* every-epoch - the old default: a checkpoint every epoch, all kept (`every_epochs: 1, keep_last: 100`);
* defaults    - `training.checkpoint` as it ships: every 30 s, the last 2 and the best 1 kept;
* last-only   - no checkpoint but the last (`every_seconds: 86400, keep_best: 0`).

Training time is the job row's claim → finish (`started_at` → `finished_at`): everything the training process
does, checkpoints included. Targets: defaults ≥ 0.95 × last-only in speed (time ratio last-only ÷ defaults),
and never more than 3 checkpoints a job (keep_last + keep_best).
"""

import argparse
import statistics
from dataclasses import dataclass, field

from sqlalchemy import func, select

from app.db.tables import Checkpoint, Job
from bench.report import console, ratio_cell, table, verdict
from bench.service_throughput import run_job
from bench.stack import Stack, machine, service_stack
from models.specs import JobSpec, parse_job_spec
from models.templates import TEMPLATES

VARIANTS: dict[str, dict[str, float | int]] = {
    "every-epoch": {"every_epochs": 1, "keep_last": 100, "keep_best": 0},
    "defaults": {},
    "last-only": {"every_seconds": 86_400, "keep_best": 0},
}


@dataclass
class Kept:
    seconds: list[float] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)


def variant_spec(template: str, variant: str, epochs: int | None) -> JobSpec:
    raw = {**TEMPLATES[template], "training": dict(TEMPLATES[template]["training"])}
    raw["training"]["checkpoint"] = VARIANTS[variant]
    raw["training"]["device"] = "cpu"
    if epochs is not None:
        raw["training"]["epochs"] = min(epochs, raw["training"]["epochs"])
    return parse_job_spec(raw)


def run_variant(stack: Stack, client, spec: JobSpec, kept: Kept) -> None:  # type: ignore[no-untyped-def]
    times = run_job(stack, client, spec)
    with stack.factory() as session:
        job_id = session.scalar(select(Job.id).order_by(Job.created_at.desc()).limit(1))  # the one just run
        count, size = session.execute(
            select(func.count(), func.coalesce(func.sum(Checkpoint.size), 0)).where(
                Checkpoint.job_id == job_id
            )
        ).one()
    kept.seconds.append(times.finished - times.running)
    kept.checkpoints.append(count)
    kept.bytes.append(size)


def measure(
    embedded: bool, templates: list[str], rounds: int, epochs: int | None
) -> dict[str, dict[str, Kept]]:
    results = {t: {v: Kept() for v in VARIANTS} for t in templates}
    with service_stack(embedded=embedded) as stack, stack.client() as client:
        run_job(stack, client, variant_spec(templates[0], "defaults", 1))  # warms the API and the worker
        for round_ in range(rounds):
            for template in templates:
                order = list(VARIANTS)[round_ % 3 :] + list(VARIANTS)[: round_ % 3]
                for variant in order:
                    run_variant(
                        stack, client, variant_spec(template, variant, epochs), results[template][variant]
                    )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="cap each template's epochs")
    parser.add_argument("--template", nargs="+", choices=sorted(TEMPLATES), default=sorted(TEMPLATES))
    parser.add_argument("--broker", choices=("redis", "embedded"), nargs="+", default=["embedded", "redis"])
    args = parser.parse_args(argv)
    rows = []
    for broker in args.broker:
        label = "Redis + PostgreSQL" if broker == "redis" else "filesystem + SQLite"
        for template, kept in measure(broker == "embedded", args.template, args.rounds, args.epochs).items():
            speed = [
                last / default
                for last, default in zip(kept["last-only"].seconds, kept["defaults"].seconds, strict=True)
            ]
            most = max(kept["defaults"].checkpoints)
            rows.append(
                [
                    label,
                    template,
                    f"{statistics.median(kept['last-only'].seconds):.2f}",
                    f"{statistics.median(kept['defaults'].seconds):.2f}",
                    f"{statistics.median(kept['every-epoch'].seconds):.2f}",
                    f"{ratio_cell(speed)} {verdict(statistics.median(speed) >= 0.95)}",
                    f"{most} {verdict(most <= 3)}",
                    f"{statistics.median(kept['every-epoch'].bytes) / 1e6:.2f}",
                    f"{statistics.median(kept['defaults'].bytes) / 1e6:.2f}",
                ]
            )
    console.print(
        table(
            f"Checkpoint policy, {args.rounds} round(s) per template: training seconds (claim → finish), "
            "speed of the defaults against the last checkpoint only, checkpoints and MB kept per job",
            [
                "stack",
                "template",
                "last-only s",
                "defaults s",
                "every-epoch s",
                "speed defaults ÷ last-only (≥ 0.95)",
                "most kept (≤ 3)",
                "MB every-epoch",
                "MB defaults",
            ],
            rows,
            machine(),
        )
    )


if __name__ == "__main__":
    main()
