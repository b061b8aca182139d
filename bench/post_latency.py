"""POST /v1/jobs latency for specs within the cost limits, the largest ones included, and for the probe's
specs beyond them (issue 17): every POST estimates the spec's cost, then dry-runs it in a child forked from a
warm server, so its time is bounded by what the limits admit.

    .venv/bin/python -m bench.post_latency [--posts 20]

The API runs as `nnforge serve` runs it (uvicorn, PostgreSQL, Redis, auth on), without a worker: the jobs stay
queued (the queued limit is raised). Specs at the limit: the largest sequence length an LSTM of 2 × 1024
may read under MAX_DRY_RUN_FLOPS, the widest MLP under MAX_PARAMETERS, a CNN and a convolutional GAN (whose
check generates 2 000 samples) on 32×32×3 images. Target: p99 ≤ 1 s for every spec within the limits.
"""

import argparse
import io
import time
from typing import Any

import httpx2
import numpy as np

from app.core.settings import Settings
from bench.report import console, percentile, table, verdict
from bench.stack import machine, service_stack
from models.cost import estimate
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.specs import JobSpec
from models.templates import TEMPLATES

TARGET_P99_S = 1.0
LSTM = {"arch": "rnn", "cell": "lstm", "hidden_size": 1024, "num_layers": 2}
CNN = {"arch": "cnn", "conv_blocks": [{"channels": 64}, {"channels": 128}, {"channels": 128}]}
CONV_GAN = {
    "arch": "gan",
    "generator": {"kind": "conv", "channels": 16},
    "discriminator": {"kind": "conv", "channels": 16},
}


def _npz(x: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=x.astype(np.float32), y=y)
    return buffer.getvalue()


def _sequence_info(steps: int) -> DatasetInfo:
    return DatasetInfo(
        name="seq", task="classification", num_samples=20, sample_shape=(steps, 1), num_classes=2
    )


def longest_sequence_within(limit: float) -> int:
    """The largest T at which the LSTM's dry run stays within `limit` FLOPs."""
    spec = JobSpec.model_validate({"dataset": {"name": "digits"}, "model": LSTM})
    low, high = 1, 100_000
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (
            (mid, high) if estimate(spec, _sequence_info(mid)).dry_run_flops <= limit else (low, mid - 1)
        )
    return low


def upload(client: httpx2.Client, name: str, data: bytes) -> str:
    response = client.post("/v1/datasets", files={"file": (name, data)})
    response.raise_for_status()
    return str(response.json()["id"])


def cases(client: httpx2.Client, settings: Settings) -> list[tuple[str, dict[str, Any], DatasetInfo]]:
    rng = np.random.default_rng(0)
    longest = longest_sequence_within(settings.max_dry_run_flops)
    sequences = {steps: rng.standard_normal((20, steps, 1)) for steps in (longest, 1000, 4000)}
    images = rng.standard_normal((64, 3, 32, 32))
    image_id = upload(client, "images.npz", _npz(images, np.arange(64) % 10))
    image_info = DatasetInfo(
        name="images", task="classification", num_samples=64, sample_shape=(3, 32, 32), num_classes=10
    )
    found: list[tuple[str, dict[str, Any], DatasetInfo]] = []
    for template in sorted(TEMPLATES):
        spec = TEMPLATES[template]
        found.append((f"template {template}", spec, BUILTIN_DATASETS[spec["dataset"]["name"]]))
    found.append(
        (
            "mlp 4096 × 2 (17 M parameters)",
            {"dataset": {"name": "digits"}, "model": {"arch": "mlp", "hidden_sizes": [4096, 4096]}},
            BUILTIN_DATASETS["digits"],
        )
    )
    found.append(("cnn 64-128-128 on 32×32×3", {"dataset": {"id": image_id}, "model": CNN}, image_info))
    found.append(("conv GAN 16 on 32×32×3", {"dataset": {"id": image_id}, "model": CONV_GAN}, image_info))
    for steps, x in sequences.items():
        dataset_id = upload(client, f"seq{steps}.npz", _npz(x, np.arange(20) % 2))
        label = f"lstm 1024 × 2, T = {steps:,}" + (
            " (the longest within)" if steps == longest else " (the probe's)"
        )
        found.append((label, {"dataset": {"id": dataset_id}, "model": LSTM}, _sequence_info(steps)))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20, help="POSTs per spec")
    args = parser.parse_args(argv)
    rows, within = [], []
    overrides = {"max_queued_jobs_per_owner": 1_000_000, "rate_limit_per_second": 10_000.0}
    with service_stack(worker=False, **overrides) as stack, stack.client() as client:
        client.post("/v1/jobs", json=TEMPLATES["mlp"]).raise_for_status()  # the fork server is up and warm
        for label, spec, info in cases(client, stack.settings):
            cost = estimate(JobSpec.model_validate(spec), info)
            seconds, codes = [], set()
            for _ in range(args.posts):
                start = time.perf_counter()
                response = client.post("/v1/jobs", json=spec)
                seconds.append(time.perf_counter() - start)
                codes.add(response.status_code)
            p99 = percentile(seconds, 99)
            if codes == {202}:
                within.append(p99)
            rows.append(
                [
                    label,
                    f"{cost.dry_run_flops:.2g}",
                    f"{cost.step_flops:.2g}",
                    "/".join(str(c) for c in sorted(codes)),
                    *(f"{1000 * percentile(seconds, q):.0f}" for q in (50, 99)),
                    f"{1000 * max(seconds):.0f}",
                ]
            )
    met = bool(within) and max(within) <= TARGET_P99_S
    console.print(
        table(
            f"POST /v1/jobs latency, ms ({args.posts} sequential POSTs per spec; MAX_DRY_RUN_FLOPS "
            f"{Settings().max_dry_run_flops:.0e}, MAX_STEP_FLOPS {Settings().max_step_flops:.0e}); "
            f"p99 ≤ {TARGET_P99_S:g} s within the limits: {verdict(met)}",
            ["spec", "dry-run FLOPs", "step FLOPs", "status", "p50", "p99", "max"],
            rows,
            machine(),
        )
    )


if __name__ == "__main__":
    main()
