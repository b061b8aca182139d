"""A real service for the client, CLI and browser tests: uvicorn serving the API on a free port and a
Celery worker, on the session's PostgreSQL and a Redis database of their own."""

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from support import ROOT, WorkerProcess, free_port, service_env, wait_for

from app.client.serve import api_command, stop_group
from app.core.settings import Settings

LIVE_REDIS_DB = 13


@dataclass(frozen=True)
class LiveStack:
    url: str
    token: str
    settings: Settings
    worker: WorkerProcess
    api_log: Path
    api_pid: int

    def logs(self) -> str:
        return (
            self.api_log.read_text()[-3000:] + "\n--- worker ---\n" + self.worker.log_path.read_text()[-3000:]
        )


@pytest.fixture(scope="session")
def live_stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    from conftest import new_token, redis_database

    folder = tmp_path_factory.mktemp("live")
    settings = Settings(
        database_url=postgres_url,
        redis_url=redis_database(LIVE_REDIS_DB),
        nnforge_home=folder / "home",
        heartbeat_seconds=0.2,
    )
    worker = WorkerProcess(settings, folder / "worker.log")
    port = free_port()
    api_log = folder / "api.log"
    with api_log.open("wb") as log:
        api = subprocess.Popen(
            api_command(settings.model_copy(update={"host": "127.0.0.1", "port": port})),
            cwd=ROOT,
            env=service_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if api.poll() is not None:
            raise RuntimeError(f"the API exited:\n{api_log.read_text()}")
        try:
            return httpx2.get(f"{url}/livez", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    try:
        wait_for(ready, timeout=60, what="the API to listen")
        yield LiveStack(url, new_token(settings, "live-user"), settings, worker, api_log, api.pid)
    finally:
        stop_group(api)
        worker.stop()
