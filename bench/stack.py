"""A private service for the benchmarks, all on 127.0.0.1: a fresh PostgreSQL database and a Redis database
(or SQLite and the filesystem broker), the API as `nnforge serve` starts it, and optionally one worker.

PostgreSQL and Redis are found as the tests find them (`NNFORGE_TEST_POSTGRES`, `NNFORGE_TEST_REDIS`); the
benchmarks use Redis database 10 (`NNFORGE_BENCH_REDIS_DB`), which the test suite never flushes.
"""

import contextlib
import os
import platform
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.api.tokens import create_token
from app.client.serve import api_command, stop_group, worker_command
from app.core.queue import ensure_broker_folders
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.job_state import JobStatus
from app.db.migrate import upgrade_to_head

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get(
    "NNFORGE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NNFORGE_TEST_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("NNFORGE_BENCH_REDIS_DB", "10"))
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T], *, timeout: float, interval: float = 0.02, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def machine() -> str:
    """CPU model, cores, load, torch and Python versions: the line every table is captioned with."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, load {load}, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds used so far by a process and each of its descendants (read from /proc), by pid."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])  # ppid; utime and stime are fields[11] and fields[12]
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier += children
    return {p: cpu[p] for p in tree if p in cpu}


def wait_idle(pid: int, *, window: float = 0.5, busy: float = 0.05, timeout: float = 60) -> None:
    """Wait until a process tree (a worker, its training and standby processes) uses under `busy` of a core
    over `window` seconds and no process came or went: an idle, warm worker."""
    deadline = time.monotonic() + timeout
    before = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        after = tree_cpu_seconds(pid)
        used = sum(max(0.0, seconds - before.get(p, 0.0)) for p, seconds in after.items())
        if used < busy * window and after.keys() == before.keys():
            return
        before = after
    raise TimeoutError(f"process {pid} stayed busy for {timeout} s")


def rss_bytes(pids: Iterator[int] | list[int]) -> int:
    """Resident memory of these processes, summed (VmRSS)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, StopIteration):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            line = next(x for x in lines if x.startswith("VmRSS"))
            total += int(line.split()[1]) * 1024
    return total


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    names = {n.upper() for n in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for name, value in settings.model_dump(exclude_none=True, exclude={"resolved_database_url"}).items():
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env | {"PYTHONPATH": str(ROOT)}


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"nnforge_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_database() -> str:
    import redis

    url = f"{REDIS_URL}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


def insert_jobs(
    factory: sessionmaker[Session],
    *,
    owner: str,
    count: int,
    status: JobStatus = JobStatus.SUCCEEDED,
    labelled: bool = False,
) -> None:
    """`count` finished MLP jobs straight into the job table (in batches), one second apart, oldest first;
    then ANALYZE, or PostgreSQL would plan the next queries for the tables as they were before. `labelled`:
    each job also gets a tag `sweep-<i % 10>` and, all but every tenth, a val_accuracy and val_loss."""
    from app.db.base import utcnow
    from app.db.tables import Job
    from models.specs import parse_job_spec
    from models.templates import TEMPLATES

    spec = parse_job_spec(TEMPLATES["mlp"]).model_dump(mode="json")
    now = utcnow()
    row = {
        "owner": owner,
        "name": "filler",
        "arch": "mlp",
        "spec": spec,
        "queue": "cpu",
        "num_parameters": 1,
        "status": status,
        "version": 1,
        "attempt": 1,
        "max_restarts": 3,
        "cancel_requested": False,
        "epoch": 30,
        "step": 600,
        "total_epochs": 30,
        "steps_per_epoch": 20,
        "latest_metrics": {},
        "best_metrics": {},
        "started_at": now,
        "finished_at": now,
    }

    def labels(i: int) -> dict[str, Any]:
        if not labelled:
            return {}
        accuracy = (i * 7919 % 1000) / 1000  # spread over [0, 1) in no particular order
        metrics = {} if i % 10 == 9 else {"val_accuracy": accuracy, "val_loss": 1 - accuracy}
        return {"tags": [f"sweep-{i % 10}"], "best_metrics": metrics}

    for start in range(0, count, 5000):
        rows = [
            row | {"id": str(uuid.uuid4()), "created_at": now - timedelta(seconds=count - i)} | labels(i)
            for i in range(start, min(count, start + 5000))
        ]
        with transaction(factory) as session:
            session.execute(sa.insert(Job), rows)
    with transaction(factory) as session:  # fresh statistics, as autovacuum would gather after such growth
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("ANALYZE job, job_tag, job_best_metric"))


@dataclass
class Stack:
    url: str
    token: str
    settings: Settings
    factory: sessionmaker[Session]
    folder: Path
    worker_log: Path | None
    worker_pid: int | None

    def client(self, **kwargs: Any) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)


class Child:
    """A service process in its own process group, its output in a file."""

    def __init__(self, command: list[str], settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=service_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        stop_group(self.process)


def start_worker(settings: Settings, log_path: Path) -> Child:
    """One job at a time unless `settings` asks for more: the benchmarks compare one slot with one loop."""
    if settings.worker_concurrency is None:
        settings = settings.model_copy(update={"worker_concurrency": 1})
    worker = Child(worker_command(settings), settings, log_path)
    wait_for(
        lambda: b"ready." in log_path.read_bytes() or worker.process.poll() is not None,
        timeout=120,
        interval=0.1,
        what="the worker",
    )
    if worker.process.poll() is not None:
        raise RuntimeError(f"the worker exited:\n{log_path.read_text()[-3000:]}")
    return worker


@contextlib.contextmanager
def service_stack(*, embedded: bool = False, worker: bool = True, **overrides: Any) -> Iterator[Stack]:
    """The API (and a worker) on a database and broker of their own; everything is removed afterwards."""
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nnforge-bench-")))
        database = None if embedded else stack.enter_context(postgres_database())
        settings = Settings(
            database_url=database,
            redis_url=None if embedded else redis_database(),
            nnforge_home=folder / "home",
            port=free_port(),
            **overrides,
        )
        settings.nnforge_home.mkdir(parents=True)
        upgrade_to_head(settings.resolved_database_url)
        ensure_broker_folders(settings)
        engine = make_engine(settings.resolved_database_url)
        stack.callback(engine.dispose)
        factory = make_session_factory(engine)
        with transaction(factory) as session:
            token = create_token(session=session, owner="bench").secret
        api = Child(api_command(settings), settings, folder / "api.log")
        stack.callback(api.stop)
        url = f"http://127.0.0.1:{settings.port}"

        def listening() -> bool:
            if api.process.poll() is not None:
                raise RuntimeError(f"the API exited:\n{(folder / 'api.log').read_text()[-3000:]}")
            try:
                return httpx2.get(f"{url}/livez", timeout=2).status_code == 200
            except httpx2.TransportError:
                return False

        wait_for(listening, timeout=60, interval=0.1, what="the API")
        worker_log, worker_pid = None, None
        if worker:
            worker_log = folder / "worker.log"
            child = start_worker(settings, worker_log)
            stack.callback(child.stop)
            worker_pid = child.process.pid
        yield Stack(url, token, settings, factory, folder, worker_log, worker_pid)
