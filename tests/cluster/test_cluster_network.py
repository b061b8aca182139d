"""A slow, lossy network between a worker host and the database host: 200 ms each way, jitter, and a
connection reset every few seconds (fault_proxy.py, since this kernel has no netem). A job still trains
every step once on its first attempt: its heartbeats ride out the resets."""

import os
import signal
import sys
from pathlib import Path

from cluster_jobs import assert_every_step_once, finished, running_on, spec, steps_per_epoch, submit
from netns_cluster import POSTGRES_PORT, REDIS_PORT, Stack, Worker
from support import wait_for

PROXY = Path(__file__).resolve().parent / "fault_proxy.py"
PROXIED_REDIS, PROXIED_POSTGRES = 16379, 15432


def test_a_job_over_a_slow_lossy_link_trains_every_step_once_without_losing_its_lease(live: Stack) -> None:
    db = live.cluster.hosts["db"].address
    log = live.cluster.root / "proxy.log"
    proxy = live.cluster.start(
        "db",
        [sys.executable, str(PROXY), "--delay", "0.2", "--jitter", "0.05", "--reset-every", "3",
         "--resets-on-signal",
         f"{db}:{PROXIED_REDIS}={db}:{REDIS_PORT}", f"{db}:{PROXIED_POSTGRES}={db}:{POSTGRES_PORT}"],
        os.environ.copy(),
        log,
    )  # fmt: skip
    try:
        wait_for(lambda: b"listening" in log.read_bytes(), timeout=30, what="the proxy")
        # Leases sized for this link: a heartbeat is a few round trips of 0.4-0.5 s, a reset costs a
        # reconnect (TCP, then PostgreSQL's start-up) on top. The default (30 s) leaves more room still.
        settings = live.service.settings.model_copy(
            update={
                "database_url": f"postgresql+psycopg://postgres@{db}:{PROXIED_POSTGRES}/postgres",
                "redis_url": f"redis://{db}:{PROXIED_REDIS}/0",
                "heartbeat_seconds": 1.0,
                "lease_seconds": 15.0,
                "reconcile_seconds": 2.0,
            }
        )
        live.use(w1=Worker("through the fault proxy", settings=settings), w2=None)
        epochs, batch_size = 8, 16
        resets_before = log.read_text().count("reset")
        job_spec = spec(epochs=epochs, hidden=64, batch_size=batch_size, every_epochs=None)
        job_id = submit(live, job_spec, "lossy")
        running_on(live, job_id, "w1")
        proxy.send_signal(signal.SIGUSR1)  # and now the resets
        (job,) = finished(live, [job_id], timeout=240)
        resets = log.read_text().count("reset") - resets_before
    finally:
        proxy.kill()
        proxy.wait()
        live.cluster.hosts["db"].processes.remove(proxy)

    assert (job.status, job.attempt, job.worker_host) == ("succeeded", 1, "w1"), job.error_message
    assert resets >= 1  # the job did live through resets
    assert "lease lapsed" not in live.service.log_of("w1")
    steps = epochs * steps_per_epoch(batch_size)
    assert_every_step_once(live, job_id, steps)
    assert job.attempt_started_at is not None and job.finished_at is not None
    seconds = (job.finished_at - job.attempt_started_at).total_seconds()
    print(f"\nlossy link: {steps} steps in {seconds:.1f} s ({steps / seconds:.0f} steps/s), {resets} resets")
