"""Give the throwaway service of .ci/schemathesis.sh real jobs, checkpoints, evaluations and a sweep, and
print the schemathesis settings (TOML) that send the fuzzer's `{job_id}`, `{evaluation_id}`, `{sweep_id}`
and `{which}` to them.

Without them every id the fuzzer makes up is a 404, and the code behind a job's evaluations, predict,
lineage, checkpoints and a sweep's routes is never reached. The jobs are POSTed through the API (dry run and
all) and trained here by the worker's own functions (claim, `fit` with the database hook, the report after
a classifier succeeds); the sweep's first driver pass queues its trials. No worker runs beside the server:
what the API sends to the broker waits there unread.

Usage (NNFORGE_HOME as the server's): python .ci/schemathesis_seed.py URL TOKEN > seed.toml
"""

import json
import sys
import uuid
from typing import Any

import torch
from sqlalchemy.orm import Session, sessionmaker

from app.core.settings import Settings, get_settings
from app.db.engine import make_engine, make_session_factory
from models.cost import CostLimits
from nnforge import Client
from workers.job_store import JobStore, claim_next
from workers.runner import StopSignals, run_claimed
from workers.sweep_driver import Limits, drive

# Small and quick (a second or two of training each): what matters is that the rows are real.
SPEC: dict[str, Any] = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [32]},
    "training": {"epochs": 1, "batch_size": 64, "seed": 0},
}
SWEEP: dict[str, Any] = {
    "name": "schemathesis",
    "base": SPEC,
    "space": {"optimizer.lr": {"low": 1e-4, "high": 0.1, "log": True}},
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 4,
    "parallel": 2,
}


def train(factory: sessionmaker[Session], settings: Settings, job_id: str, queue: str) -> None:
    """Run the queued job to its end as a worker's training process would (workers/trainer.py)."""
    token = uuid.uuid4().hex
    claimed = claim_next(
        factory, queue=queue, token=token, max_running_per_owner=settings.max_running_jobs_per_owner
    )
    if claimed is None or claimed.id != job_id:
        raise SystemExit(f"seeding: claimed {claimed and claimed.id} instead of job {job_id}")
    store = JobStore(factory, claimed.id, token, owner=claimed.owner)
    signals = StopSignals()
    outcome = run_claimed(store, claimed, signals, settings.heartbeat_seconds, settings.max_step_seconds)
    if outcome != "succeeded":
        raise SystemExit(f"seeding: job {job_id} ended {outcome}")


def toml(value: Any) -> str:
    return json.dumps(value)  # ids and numbers: JSON's spelling is TOML's


def main(url: str, token: str) -> int:
    torch.set_num_threads(1)
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    with Client(url, token) as client:
        parent = client.submit(SPEC, name="schemathesis parent")
        train(factory, settings, parent.id, parent.data["queue"])
        # The fuzzed job starts from the parent's checkpoint: its lineage has a parent, and the parent, which
        # a job needs, is refused to DELETE (409) rather than deleted from under the other routes.
        child = client.submit(SPEC, name="schemathesis child", init_from={"job": parent.id})
        train(factory, settings, child.id, child.data["queue"])
        reports = child.evaluations()  # the report that followed its success
        if not reports or reports[0]["status"] != "succeeded":
            raise SystemExit(f"seeding: job {child.id} has no succeeded report: {reports}")
        checkpoint = child.checkpoints()[0]["id"]
        # The first predict of a checkpoint exports it to ONNX (seconds, in a child process): done here, not
        # in a fuzzed request that has 10 s.
        client.request("POST", f"/v1/jobs/{child.id}/predict", json={"inputs": [[0.0] * 64]})
        sweep = client.sweep(SWEEP)
    drive(
        factory,
        sweep_id=sweep.id,
        database_url=settings.resolved_database_url,
        limits=Limits(
            settings.max_restarts,
            settings.max_queued_jobs_per_owner,
            CostLimits(settings.max_step_flops, settings.max_job_memory_bytes, settings.max_dry_run_flops),
        ),
    )
    engine.dispose()
    print(
        f"""
# Written by .ci/schemathesis_seed.py: the seeded ids. Every other parameter is still generated.
[parameters]
"path.job_id" = {toml(child.id)}
"path.evaluation_id" = {toml(reports[0]["id"])}
"path.sweep_id" = {toml(sweep.id)}
# The checkpoint of predict and of an evaluation: the job's three times in four, else the fuzzer's own.
"body.checkpoint" = {{ dictionary = "checkpoints", probability = 0.75 }}
"path.which" = {{ dictionary = "checkpoints", probability = 0.75 }}

[dictionaries.checkpoints]
values = ["best", "latest", {toml(str(checkpoint))}]

# include-name, not include-path with include-method: schemathesis ORs separate include keys.
[[operations]]
include-name = "DELETE /v1/jobs/{{job_id}}"
parameters = {{ "path.job_id" = {toml(parent.id)} }}

[[operations]]
include-name = "DELETE /v1/jobs/{{job_id}}/checkpoints/{{which}}"
parameters = {{ "path.which" = {checkpoint} }}
"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
