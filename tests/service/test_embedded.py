"""The zero-setup mode a new user starts with: `nnforge serve` on SQLite and the filesystem broker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import torch
from support import ROOT, free_port, wait_for


def test_serve_runs_a_job_on_sqlite_and_the_filesystem_broker(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"NNFORGE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT), "HEARTBEAT_SECONDS": "0.2"}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", "from app.client.cli import main; main()", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx2.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx2.HTTPError:
                return False

        wait_for(ready, timeout=90, what="nnforge serve to be ready")
        token = (tmp_path / "home" / "token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx2.get(f"{base}/v1/jobs", timeout=5).status_code == 401
        spec = {
            "dataset": {"name": "moons"},
            "model": {"arch": "mlp", "hidden_sizes": [16]},
            "training": {"epochs": 3},
        }
        job_id = httpx2.post(f"{base}/v1/jobs", json=spec, headers=auth, timeout=60).json()["id"]
        job = wait_for(
            lambda: (
                (j := httpx2.get(f"{base}/v1/jobs/{job_id}", headers=auth, timeout=5).json())["status"]
                in ("succeeded", "failed", "cancelled")
                and j
            ),
            timeout=180,
            interval=0.5,
            what="the job to finish",
        )
        assert job["status"] == "succeeded", (job["error"], (tmp_path / "serve.log").read_text()[-3000:])
        checkpoint = httpx2.get(f"{base}/v1/jobs/{job_id}/checkpoints/best", headers=auth, timeout=10)
        (tmp_path / "best.pt").write_bytes(checkpoint.content)
        assert torch.load(tmp_path / "best.pt", weights_only=True)["progress"]["epoch"] == 3
        assert (tmp_path / "home" / "nnforge.db").exists()
        assert (tmp_path / "home" / "broker" / "queue").is_dir()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        code = server.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert "nnforge is up" in (tmp_path / "serve.log").read_text()


def _worker_pid(server_pid: int) -> int:
    """The Celery worker `nnforge serve` started: its child whose command line runs celery."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == server_pid and b"celery" in cmdline:
            return int(stat.parent.name)
    raise LookupError("no worker under nnforge serve")


def test_serve_restarts_a_killed_worker_keeps_the_api_up_and_takes_its_job_back_within_a_lease(
    tmp_path: Path,
) -> None:
    lease, reconcile = 8.0, 2.0  # a lease longer than the worker's restart, as the default (30 s) is
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "NNFORGE_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
        "HEARTBEAT_SECONDS": "0.2",
        "LEASE_SECONDS": str(lease),
        "RECONCILE_SECONDS": str(reconcile),
        "WORKER_CONCURRENCY": "1",
    }
    output = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-c", "from app.client.cli import main; main()", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=output.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/livez"), timeout=90, what="nnforge serve to be up")
        auth = {"Authorization": f"Bearer {(tmp_path / 'home' / 'token').read_text().strip()}"}
        spec = {
            "dataset": {"name": "moons"},
            "model": {"arch": "mlp", "hidden_sizes": [16]},
            "training": {"epochs": 1000, "batch_size": 8},
        }
        job_id = httpx2.post(f"{base}/v1/jobs", json=spec, headers=auth, timeout=60).json()["id"]

        def job() -> dict[str, object]:
            return dict(httpx2.get(f"{base}/v1/jobs/{job_id}", headers=auth, timeout=5).json())

        def training() -> bool:
            return bool((j := job())["status"] == "running" and j["progress"]["epoch"])

        wait_for(training, timeout=120, what="the job to train")
        os.kill(_worker_pid(server.pid), signal.SIGKILL)
        killed_at = time.monotonic()
        api_answers = []
        while (j := job())["status"] == "running" and j["attempt"] == 1 and time.monotonic() - killed_at < 60:
            api_answers.append(_answers(f"{base}/livez"))
            time.sleep(0.2)
        taken_back_after = time.monotonic() - killed_at
        assert all(api_answers)  # the API stayed up while the worker was restarted
        # the kill, one lease, one reconcile pass, plus the polling above
        assert taken_back_after <= lease + reconcile + 1, taken_back_after
        # It resumes (from the start: it left no checkpoint) and goes on writing its steps.
        wait_for(
            lambda: (j := job())["attempt"] == 2 and j["status"] == "running" and j["progress"]["epoch"] >= 2,
            timeout=120,
            what="the job to resume",
        )
        httpx2.post(f"{base}/v1/jobs/{job_id}/cancel", headers=auth, timeout=10)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        code = server.wait(timeout=60)
    said = output.read_text()
    assert code == 0, said[-3000:]
    assert "nnforge: the worker killed by SIGKILL; restarting it in 1 s" in said
    assert "nnforge: restarted the worker" in said
    # Quiet by default: Celery's banner and root warning are in the worker's log file, not in the output.
    worker_log = (tmp_path / "home" / "logs" / "worker.log").read_text()
    assert "[config]" not in said and "[config]" in worker_log
    assert "SecurityWarning" not in said  # Celery's warning when run as root


def _answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False
