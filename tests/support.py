"""Helpers for tests that start real processes: free ports, worker processes, polling."""

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from app.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# The smallest GAN that trains: tests that need a generative job (samples, compile) add their `training`.
TINY_GAN = {
    "dataset": {"name": "gaussian-ring"},
    "model": {
        "arch": "gan",
        "latent_dim": 4,
        "generator": {"kind": "mlp", "hidden_sizes": [16]},
        "discriminator": {"kind": "mlp", "hidden_sizes": [16]},
    },
}
T = TypeVar("T")


def in_ci() -> bool:
    """Whether this run is CI: `CI` set to a true value (true, 1 or yes, in any case; `CI=false` is not).
    There every skip is a failure (tests/conftest.py): a missing service or extra must not pass silently."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    for name, value in settings.model_dump(exclude_none=True, exclude={"resolved_database_url"}).items():
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env |= {"TORCH_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return env


class WorkerProcess:
    """A real `celery worker` process, as `nnforge serve` starts it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        from app.client.serve import worker_command

        if settings.worker_concurrency is None:  # the tests reason about one job at a time unless they ask
            settings = settings.model_copy(update={"worker_concurrency": 1})
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            worker_command(settings),
            cwd=ROOT,
            env=service_env(settings),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while b"ready." not in log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        from app.client.serve import stop_group

        stop_group(self.process)
        self.log.close()


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
