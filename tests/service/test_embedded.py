"""The zero-setup mode a new user starts with: `nnforge serve` on SQLite and the filesystem broker."""

import os
import signal
import subprocess
import sys
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
