"""The broker is only a wake-up call: losing it, or it redelivering, never loses or doubles a job."""

from pathlib import Path

import torch
from jobs import job_row, latest_checkpoint_bytes, session_factory, steps_of, submit
from services import PrivateRedis
from sqlalchemy import select
from support import WorkerProcess, wait_for

from app.core.settings import Settings
from app.db.tables import Job
from models.checkpoint import read_checkpoint
from models.specs import parse_job_spec
from models.train import fit

LONG = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [128]},
    "training": {"epochs": 40, "batch_size": 16},
}
SHORT = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [8]},
    "training": {"epochs": 1, "batch_size": 256},
}


def test_redis_killed_and_restarted_empty_loses_no_job(
    fault_settings: Settings, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    factory = session_factory(fault_settings)
    worker = WorkerProcess(fault_settings, tmp_path / "worker.log")
    try:
        running = submit(fault_settings, LONG)
        wait_for(
            lambda: job_row(factory, running).status == "running", timeout=60, what="the long job to run"
        )
        queued = [submit(fault_settings, SHORT | {"name": f"q{i}"}) for i in range(20)]
        private_redis.kill()  # every queued message is gone with it
        private_redis.start()  # empty: nothing was persisted
        ids = [running, *queued]

        def all_done() -> bool:
            with factory() as session:
                return set(session.scalars(select(Job.status).where(Job.id.in_(ids)))) == {"succeeded"}

        wait_for(all_done, timeout=300, interval=0.5, what="all 21 jobs to succeed")
    finally:
        worker.stop()
    torch.set_num_threads(1)  # as the worker's training processes run
    references = {running: _uninterrupted(LONG)} | dict.fromkeys(queued, _uninterrupted(SHORT))
    for job_id, (total_steps, weights) in references.items():
        job = job_row(factory, job_id)
        assert job.attempt == 1, (job_id, job.attempt)  # each ran exactly once
        assert steps_of(factory, job_id) == list(range(1, total_steps + 1)), job_id  # whole, not cut short
        trained = read_checkpoint(latest_checkpoint_bytes(factory, job_id))["model"]
        assert all(torch.equal(weights[k], trained[k]) for k in weights), job_id


def _uninterrupted(spec: dict) -> tuple[int, dict[str, torch.Tensor]]:
    """The steps and final weights of `spec` trained by `fit()` in one go."""
    result = fit(parse_job_spec(spec))
    return result.progress.step, result.model.state_dict()


def test_redelivery_after_a_short_visibility_timeout_never_runs_a_job_twice(
    fault_settings: Settings, tmp_path: Path
) -> None:
    settings = fault_settings.model_copy(update={"broker_visibility_seconds": 2.0})
    factory = session_factory(settings)
    workers = [WorkerProcess(settings, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        # Longer than the visibility timeout plus kombu's 10 s restore sweep, so Redis redelivers it.
        job_id = submit(settings, LONG | {"training": {"epochs": 400, "batch_size": 16}})
        job = wait_for(
            lambda: (j := job_row(factory, job_id)).status == "succeeded" and j,
            timeout=300,
            interval=0.5,
            what="the job to succeed",
        )
    finally:
        for worker in workers:
            worker.stop()
    logs = "".join(w.log_path.read_text() for w in workers)
    assert f"job {job_id}: message redelivered" in logs, "Redis should have redelivered the running job"
    assert job.attempt == 1
    assert logs.count(f"job {job_id} attempt 1 starts") == 1  # one run ever trained it
