"""Killed workers and training processes, and warm shutdowns, cost time, never a job or a metric."""

import os
import signal
from pathlib import Path

import torch
from jobs import job_row, latest_checkpoint_bytes, session_factory, steps_of, submit, trainer_pids
from support import WorkerProcess, wait_for

from app.core.settings import Settings
from models.checkpoint import read_checkpoint
from models.specs import parse_job_spec
from models.train import fit

SPEC = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [256, 256], "dropout": 0.1},
    "optimizer": {"name": "momentum", "lr": 0.02},
    # A checkpoint every epoch, so each kill resumes from a recent one (the default writes every 30 s).
    "training": {"epochs": 30, "batch_size": 16, "seed": 3, "checkpoint": {"every_epochs": 1}},
}
TOTAL_STEPS = 30 * 79  # 1258 training samples of digits in batches of 16


def test_sigkill_of_the_worker_three_times_still_gives_the_uninterrupted_result(
    fault_settings: Settings, tmp_path: Path
) -> None:
    factory = session_factory(fault_settings)
    job_id = submit(fault_settings, SPEC)
    for kill_at_epoch in (3, 10, 18):
        worker = WorkerProcess(fault_settings, tmp_path / f"worker-{kill_at_epoch}.log")
        wait_for(
            lambda e=kill_at_epoch: job_row(factory, job_id).epoch >= e,
            timeout=180,
            interval=0.05,
            what=f"epoch {kill_at_epoch}",
        )
        os.killpg(worker.process.pid, signal.SIGKILL)  # the Celery main process and its pool child
        worker.process.wait()
        wait_for(lambda: not trainer_pids(job_id), timeout=10, what="the training process to die with it")
    last = WorkerProcess(fault_settings, tmp_path / "worker-last.log")
    try:
        job = wait_for(
            lambda: (j := job_row(factory, job_id)).status in ("succeeded", "failed") and j,
            timeout=240,
            interval=0.2,
            what="the job to finish",
        )
    finally:
        last.stop()
    assert (job.status, job.attempt) == ("succeeded", 4), job.error_message
    steps = steps_of(factory, job_id)
    assert steps == list(range(1, TOTAL_STEPS + 1))  # no step lost, none duplicated

    torch.set_num_threads(1)
    reference = fit(parse_job_spec(SPEC)).model.state_dict()
    resumed = read_checkpoint(latest_checkpoint_bytes(factory, job_id))["model"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_a_run_that_dies_every_time_fails_after_max_restarts_plus_one_attempts(
    fault_settings: Settings, tmp_path: Path
) -> None:
    factory = session_factory(fault_settings)
    job_id = submit(fault_settings, SPEC, max_restarts=2)
    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    worker = WorkerProcess(fault_settings, tmp_path / "worker.log")
    try:
        for attempt in (1, 2, 3):
            pids = wait_for(
                lambda a=attempt: job_row(factory, job_id).attempt == a and trainer_pids(job_id),
                timeout=120,
                interval=0.05,
                what=f"attempt {attempt} to start",
            )
            for pid in pids:  # training yields the CPU to the API and the database: it runs niced
                assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, own_nice + fault_settings.trainer_nice)
                os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
        job = wait_for(
            lambda: (j := job_row(factory, job_id)).status == "failed" and j,
            timeout=60,
            what="the job to fail",
        )
        assert (job.attempt, job.error_type) == (3, "worker_lost")
        assert "exit code -9" in (job.error_message or "")
        wait_for(lambda: not trainer_pids(job_id), timeout=5, what="no further attempt")
        assert job_row(factory, job_id).attempt == 3
    finally:
        worker.stop()


def test_warm_shutdown_hands_the_job_back_and_a_new_worker_resumes_it(
    fault_settings: Settings, tmp_path: Path
) -> None:
    factory = session_factory(fault_settings)
    job_id = submit(fault_settings, SPEC)
    worker = WorkerProcess(fault_settings, tmp_path / "worker-1.log")
    wait_for(lambda: job_row(factory, job_id).epoch >= 1, timeout=120, interval=0.05, what="epoch 1")
    worker.process.send_signal(signal.SIGTERM)  # what `docker stop` or Ctrl-C sends: a warm shutdown
    worker.process.wait(timeout=30)
    worker.stop()
    job = job_row(factory, job_id)
    assert job.status == "queued" and job.lease_owner is None
    handed_back_at = read_checkpoint(latest_checkpoint_bytes(factory, job_id))["progress"]["step"]
    assert handed_back_at >= job.step  # nothing trained after the checkpoint is lost

    second = WorkerProcess(fault_settings, tmp_path / "worker-2.log")
    try:
        job = wait_for(
            lambda: (j := job_row(factory, job_id)).status == "succeeded" and j,
            timeout=240,
            interval=0.2,
            what="the resumed job to finish",
        )
    finally:
        second.stop()
    assert job.attempt == 2
    assert steps_of(factory, job_id) == list(range(1, TOTAL_STEPS + 1))


def test_a_job_past_the_time_limit_fails_as_timeout(fault_settings: Settings, tmp_path: Path) -> None:
    settings = fault_settings.model_copy(update={"max_job_seconds": 8})
    factory = session_factory(settings)
    job_id = submit(settings, SPEC | {"training": {"epochs": 1000, "batch_size": 16}})
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        job = wait_for(
            lambda: (j := job_row(factory, job_id)).status not in ("queued", "running") and j,
            timeout=120,
            what="the job to end",
        )
    finally:
        worker.stop()
    assert (job.status, job.error_type, job.attempt) == ("failed", "timeout", 1)
    assert not trainer_pids(job_id)
