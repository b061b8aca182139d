"""Predict's speed for the digits MLP (the `mlp` template's network): one sample's latency (p50, p99) and a
batch of 256's throughput, through HTTP (POST /v1/jobs/{id}/predict on the API as `nnforge serve` runs it:
PostgreSQL, auth on, the rate limit raised) against the same ONNX file in an in-process ONNX Runtime session
(the baseline: what predict adds is HTTP, JSON, the token, the job and checkpoint look-up), with torch's
`load_model` in-process beside them for reference.

    .venv/bin/python -m bench.predict [--requests 500] [--rounds 20]

Targets (issue 15): through HTTP, one sample p50 ≤ 5 ms and a batch of 256 ≥ 20,000 samples/s.
"""

import argparse
import copy
import hashlib
import json
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from app.db.base import utcnow
from app.db.engine import transaction
from app.db.job_state import JobStatus
from app.db.tables import Checkpoint, Job
from bench.report import console, percentile, table, verdict
from bench.stack import machine, service_stack
from models.checkpoint import checkpoint_bytes, load_model
from models.specs import JobSpec
from models.templates import TEMPLATES
from models.train import fit

TARGET_P50_MS = 5.0
TARGET_BATCH_PER_SECOND = 20_000.0
BATCH = 256


def timed(call: Callable[[], object], times: int) -> list[float]:
    """Milliseconds of each of `times` calls, one after the other."""
    out = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def store_job(factory, checkpoint: dict, owner: str) -> str:  # type: ignore[no-untyped-def]
    """A finished job with `checkpoint` as its best epoch's, as a worker leaves it."""
    data = checkpoint_bytes(checkpoint)
    spec = checkpoint["spec"]
    with transaction(factory) as session:
        job = Job(
            id=str(uuid.uuid4()),
            owner=owner,
            arch="mlp",
            spec=spec,
            queue="cpu",
            num_parameters=1,
            status=JobStatus.SUCCEEDED,
            version=2,
            attempt=1,
            max_restarts=3,
            cancel_requested=False,
            epoch=1,
            step=1,
            total_epochs=1,
            steps_per_epoch=1,
            latest_metrics={},
            best_metrics={},
            best_epoch=1,
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        session.add(job)
        session.flush()
        session.add(
            Checkpoint(
                job_id=job.id,
                epoch=1,
                step=1,
                end_of_epoch=True,
                metrics={},
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                data=data,
                created_at=utcnow(),
            )
        )
        return str(job.id)


def row(name: str, single: list[float], batch: list[float]) -> tuple[str, ...]:
    per_second = [BATCH / (ms / 1e3) for ms in batch]
    return (
        name,
        f"{percentile(single, 50):.3f}",
        f"{percentile(single, 99):.3f}",
        f"{statistics.median(per_second):,.0f} ({min(per_second):,.0f}–{max(per_second):,.0f})",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="single-sample calls per path")
    parser.add_argument("--rounds", type=int, default=20, help="batch-of-256 calls per path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = copy.deepcopy(TEMPLATES["mlp"])
    spec["training"] |= {"epochs": 2}  # the network is the template's; how well it learned does not matter
    checkpoint = fit(JobSpec.model_validate(spec)).checkpoint
    digits = load_digits().data.astype(np.float32).reshape(-1, 8, 8)
    one, batch = digits[:1], digits[:BATCH]

    with service_stack(worker=False, rate_limit_per_second=1e6, rate_limit_burst=1_000_000) as stack:
        job_id = store_job(stack.factory, checkpoint, owner="bench")
        url = f"/v1/jobs/{job_id}/predict"
        with stack.client() as client:
            start = time.perf_counter()
            first = client.post(url, json={"inputs": one.tolist()})
            export_seconds = time.perf_counter() - start
            first.raise_for_status()
            # Bodies encoded once, as a load generator sends them: what is timed is the service's work.
            headers = {"Content-Type": "application/json"}
            body_one = json.dumps({"inputs": one.tolist()}).encode()
            body_batch = json.dumps({"inputs": batch.tolist()}).encode()

            def http_one() -> None:
                client.post(url, content=body_one, headers=headers).raise_for_status()

            def http_batch() -> None:
                client.post(url, content=body_batch, headers=headers).raise_for_status()

            timed(http_one, 20)  # warm: connection, caches
            http = (timed(http_one, args.requests), timed(http_batch, args.rounds))
            # The service's floor on this machine: an authenticated read of the same job (one look-up).
            status = timed(lambda: client.get(f"/v1/jobs/{job_id}").raise_for_status(), args.requests)

        import onnxruntime as ort

        [onnx_file] = Path(stack.settings.nnforge_home, "onnx").glob("*.onnx")
        options = ort.SessionOptions()  # as the API builds its sessions (app/api/onnx_models.py)
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        timed(lambda: session.run(None, {"input": one}), 50)
        baseline = (
            timed(lambda: session.run(None, {"input": one}), args.requests * 4),
            timed(lambda: session.run(None, {"input": batch}), args.rounds * 4),
        )

    model = load_model(checkpoint)
    with torch.no_grad():
        x_one, x_batch = torch.from_numpy(one), torch.from_numpy(batch)
        timed(lambda: model(x_one), 50)
        eager = (
            timed(lambda: model(x_one), args.requests * 4),
            timed(lambda: model(x_batch), args.rounds * 4),
        )

    http_p50 = percentile(http[0], 50)
    http_rate = statistics.median(BATCH / (ms / 1e3) for ms in http[1])
    console.print(
        table(
            "Predict, digits MLP (64 → 256 → 128 → 10): one sample and a batch of 256",
            ["path", "1 sample p50 ms", "p99 ms", "batch of 256: samples/s (median, range)"],
            [
                row("ONNX Runtime session, in-process (baseline)", *baseline),
                row("POST /v1/jobs/{id}/predict (HTTP, JSON, auth, look-up)", *http),
                row("torch load_model, in-process (reference)", *eager),
            ],
            caption=f"{machine()}; {args.requests} single requests, {args.rounds} batches through HTTP "
            f"(4× as many in-process); first request (ONNX export in a child) {export_seconds:.1f} s",
        )
    )
    status_p50 = percentile(status, 50)
    console.print(
        f"GET /v1/jobs/{{id}} on the same API (the service's floor): p50 {status_p50:.3f} ms, p99 "
        f"{percentile(status, 99):.3f} ms; predict's p50 is {http_p50 / status_p50:.1f}× it"
    )
    console.print(
        f"HTTP p50 {http_p50:.2f} ms (target ≤ {TARGET_P50_MS:g}): {verdict(http_p50 <= TARGET_P50_MS)}; "
        f"HTTP batch {http_rate:,.0f} samples/s (target ≥ {TARGET_BATCH_PER_SECOND:,.0f}): "
        f"{verdict(http_rate >= TARGET_BATCH_PER_SECOND)}; HTTP/baseline p50 "
        f"{http_p50 / percentile(baseline[0], 50):.1f}×"
    )


if __name__ == "__main__":
    main()
