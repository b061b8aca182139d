"""Worker hosts that come and go: jobs spread over hosts, a host cut off and healed (fencing), a host gone,
and clocks that disagree. Each host is a network namespace of its own (netns_cluster.py)."""

import os
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx2
import torch
from cluster_jobs import (
    assert_every_step_once,
    database_time,
    finished,
    install_write_audit,
    log_lines,
    log_times,
    read,
    running_on,
    running_somewhere,
    spec,
    steps_per_epoch,
    submit,
    writes_from,
)
from jobs import job_row, latest_checkpoint_bytes, trainer_pids
from netns_cluster import DEFAULT_WORKER, Stack, Worker
from support import ROOT, wait_for

from app.db.tables import Job
from models.checkpoint import read_checkpoint
from models.specs import parse_job_spec
from models.train import fit

SKEWED_CLOCK = Path(__file__).resolve().parent / "skewed_clock"


def test_jobs_submitted_through_the_api_host_run_on_both_worker_hosts(live: Stack) -> None:
    live.use(w1=DEFAULT_WORKER, w2=DEFAULT_WORKER)
    job_ids = [submit(live, spec(epochs=2, seed=i), f"spread-{i}") for i in range(8)]
    rows = finished(live, job_ids, timeout=180)
    assert [row.status for row in rows] == ["succeeded"] * 8, [row.error_message for row in rows]
    assert {row.worker_host for row in rows} == {"w1", "w2"}
    answers = [read(live, job_id) for job_id in job_ids]
    assert {answer["worker_host"] for answer in answers} == {"w1", "w2"}
    assert all(answer["last_heartbeat_at"] is not None for answer in answers)
    for job_id in job_ids:
        assert_every_step_once(live, job_id, 2 * steps_per_epoch(32))


def test_a_host_cut_off_mid_job_loses_it_and_its_stale_run_writes_nothing_once_healed(live: Stack) -> None:
    live.use(w1=DEFAULT_WORKER, w2=DEFAULT_WORKER)
    install_write_audit(live)
    epochs, batch_size = 25, 16
    job_spec = spec(epochs=epochs, hidden=64, batch_size=batch_size, seed=5)
    job_id = submit(live, job_spec, "partition")
    cut_host = running_somewhere(live, job_id, epoch=2).worker_host  # it has checkpoints to resume from
    assert cut_host is not None
    other = "w2" if cut_host == "w1" else "w1"
    (stale,) = [pid for pid in trainer_pids(job_id) if pid in live.cluster.pids(cut_host)]
    assert writes_from(live, cut_host, job_id)["metric"] > 0  # the audit sees that host's writes

    cut_at = database_time(live)
    live.cluster.cut(cut_host)
    running_on(live, job_id, other, attempt=2)  # taken back after the lease, resumed on the other host
    assert os.path.exists(f"/proc/{stale}")  # the stale run lives on, cut off, holding a lease it lost
    live.cluster.heal(cut_host)
    wait_for(lambda: not os.path.exists(f"/proc/{stale}"), timeout=90, what="the stale run to stop")
    (job,) = finished(live, [job_id], timeout=180)

    assert (job.status, job.attempt, job.worker_host) == ("succeeded", 2, other), job.error_message
    assert writes_from(live, cut_host, job_id, after=cut_at) == Counter()  # fenced: not one row
    assert "lease lost" in live.service.log_of(cut_host)
    assert_every_step_once(live, job_id, epochs * steps_per_epoch(batch_size))
    resumed = [line for line in log_lines(live, job_id) if "attempt 2 starts from step" in line]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) > 0

    torch.set_num_threads(1)
    reference = fit(parse_job_spec(job_spec)).model.state_dict()
    weights = read_checkpoint(latest_checkpoint_bytes(live.service.factory, job_id))["model"]
    assert all(torch.equal(reference[k], weights[k]) for k in reference)  # as if never interrupted


def test_leases_follow_the_database_clock_not_a_worker_host_clock(live: Stack) -> None:
    """w1's clock runs an hour ahead. Were leases judged by worker clocks, its reconciler would see w2's live
    lease as lapsed and steal the job, and its own stamps would look fresh for an hour after it died."""
    skewed = {"PYTHONPATH": f"{SKEWED_CLOCK}:{ROOT}", "NNFORGE_TEST_CLOCK_SKEW_SECONDS": "3600"}
    live.use(w1=Worker("clock an hour ahead", env=skewed), w2=DEFAULT_WORKER)
    long_job = spec(epochs=500, hidden=64, batch_size=16)  # runs past the test; cancelled at its end
    first = submit(live, long_job, "clock-1")
    first_host = running_somewhere(live, first, epoch=1).worker_host
    second = submit(live, long_job, "clock-2")  # the first host is busy: the other one takes it
    on = {first_host: first, running_somewhere(live, second, epoch=1).worker_host: second}
    assert set(on) == {"w1", "w2"}
    wait_for(lambda: log_times(live, on["w1"]), timeout=10, what="w1's first log line")
    # w1's processes do run an hour ahead: its log lines carry their own clock's time
    assert min(log_times(live, on["w1"])) > database_time(live) + timedelta(minutes=30)

    before = job_row(live.service.factory, on["w2"])
    time.sleep(2 * live.service.settings.lease_seconds)  # a dozen passes of w1's reconciler
    after = job_row(live.service.factory, on["w2"])
    assert (after.status, after.attempt, after.lease_owner) == ("running", 1, before.lease_owner)  # kept
    assert after.heartbeat_at is not None and before.heartbeat_at is not None
    assert after.heartbeat_at > before.heartbeat_at  # w2 renewed it meanwhile

    live.kill("w1")
    taken = wait_for(
        lambda: (row := job_row(live.service.factory, on["w1"])).status == "queued" and row,
        timeout=live.service.settings.lease_seconds + 20,
        what="w1's job taken back after the lease",
    )  # though w1's clock is an hour ahead: the database stamped its heartbeats
    assert (taken.attempt, taken.error_type) == (1, "worker_lost")
    for job_id in (first, second):
        assert httpx2.post(f"{live.url}/v1/jobs/{job_id}/cancel", headers=live.headers).status_code < 300


def test_a_worker_host_killed_whole_loses_no_job(live: Stack) -> None:
    live.use(w1=None, w2=DEFAULT_WORKER)
    # the first claimed (the oldest) is still running when its host dies; the others are quick
    specs = [spec(epochs=30, hidden=64, batch_size=16)] + [spec(epochs=2, seed=i) for i in range(6)]
    job_ids = [submit(live, job_spec, f"host-gone-{i}") for i, job_spec in enumerate(specs)]
    running = wait_for(
        lambda: _running_by_host(live, job_ids), timeout=120, what="a job running on w2, past a checkpoint"
    )
    assert [(host, row.id) for host, row in running.items()] == [("w2", job_ids[0])]
    live.kill("w2")  # every process of the host, SIGKILL
    statuses = [job_row(live.service.factory, job_id).status for job_id in job_ids]
    assert statuses == ["running"] + ["queued"] * 6
    live.use(w1=DEFAULT_WORKER)
    rows = finished(live, job_ids, timeout=240)
    assert [(row.status, row.worker_host) for row in rows] == [("succeeded", "w1")] * 7
    assert [row.attempt for row in rows] == [2] + [1] * 6  # the running one resumed, once
    for job_id, job_spec in zip(job_ids, specs, strict=True):
        training = job_spec["training"]
        assert_every_step_once(live, job_id, training["epochs"] * steps_per_epoch(training["batch_size"]))


def _running_by_host(live: Stack, job_ids: list[str]) -> dict[str, Job]:
    """The jobs running past their first checkpoint, by host."""
    rows = [job_row(live.service.factory, job_id) for job_id in job_ids]
    return {
        row.worker_host: row
        for row in rows
        if row.status == "running" and row.epoch >= 1 and row.worker_host is not None
    }
