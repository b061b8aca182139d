"""A small cluster inside this machine: a bridge and one network namespace per host, each with an address of
its own on the bridge — `db` (Redis and a PostgreSQL made by initdb), `api` (`nnforge api`) and the worker
hosts `w1`, `w2` (one `celery worker -c 1` each). Each host's processes also get a UTS namespace with the
host's name, so `hostname` (and a job's `worker_host`) says which host ran what. Traffic between hosts stays
on the bridge; the bridge's own address is the test's view into the cluster (it reads the database there).

Needs root and `ip` (iproute2); `usable()` says why not, for a skip."""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import redis
import sqlalchemy as sa
from support import ROOT, service_env, wait_for

from app.client.serve import api_command, worker_command
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.migrate import upgrade_to_head

HOSTS = ("db", "api", "w1", "w2")
API_PORT, POSTGRES_PORT, REDIS_PORT = 8000, 5432, 6379


def usable() -> str | None:
    """None when this process can build the cluster; else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("ip", "unshare", "runuser", "redis-server"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    if pg_bin("initdb") is None:
        return "PostgreSQL's server binaries (initdb) are not installed"
    return None


def pg_bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Cluster:
    """The namespaces, the bridge and the database host's servers. Worker and API processes are started
    with `start`, stopped with `stop` (SIGTERM: a warm shutdown) or `kill_host` (SIGKILL of everything in
    the host's namespace)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.bridge = f"nnf{tag}br"
        self.gateway = f"{subnet}.1"
        self.hosts = {
            name: Host(name, f"nnf{tag}-{name}", f"{subnet}.{i}") for i, name in enumerate(HOSTS, start=2)
        }
        self.root = Path(tempfile.mkdtemp(prefix="nnforge-cluster-"))
        self.root.chmod(0o755)  # the postgres user reaches its data folder through it
        self._veths: list[str] = []
        self.postgres_data = self.root / "pg" / "data"

    # -- the network ------------------------------------------------------------------------------------
    def build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts.values():
            outside, inside = f"{self.bridge[:-2]}{host.name}", f"{self.bridge[:-2]}{host.name}p"
            _ip("netns", "add", host.namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._veths.append(outside)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", inside, "netns", host.namespace)
            _ip("-n", host.namespace, "link", "set", inside, "name", "eth0")
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.namespace, "link", "set", "eth0", "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")

    def cut(self, name: str) -> None:
        """The host loses its network: its link goes down on its own side. Its processes keep running."""
        _ip("-n", self.hosts[name].namespace, "link", "set", "eth0", "down")

    def heal(self, name: str) -> None:
        _ip("-n", self.hosts[name].namespace, "link", "set", "eth0", "up")

    # -- processes --------------------------------------------------------------------------------------
    def command_on(self, name: str, command: list[str]) -> list[str]:
        """`command` run on host `name`: in its network namespace, with its hostname."""
        host = self.hosts[name]
        return [
            "ip", "netns", "exec", host.namespace,
            "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', name, *command,
        ]  # fmt: skip

    def start(self, name: str, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                self.command_on(name, command),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.hosts[name].processes.append(process)
        return process

    def pids(self, name: str) -> list[int]:
        """Every process in the host's network namespace."""
        listed = subprocess.run(
            ["ip", "netns", "pids", self.hosts[name].namespace], capture_output=True, text=True, check=True
        ).stdout
        return [int(pid) for pid in listed.split()]

    def kill_host(self, name: str) -> None:
        """The host is gone: SIGKILL to every process in its namespace."""
        deadline = time.monotonic() + 20
        while pids := self.pids(name):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {name} survive SIGKILL: {pids}")
            time.sleep(0.05)
        self._reap(name)

    def stop(self, name: str, *, grace: float = 30.0) -> None:
        """SIGTERM to the host's processes (a warm shutdown), SIGKILL to what is left after `grace`."""
        for process in self.hosts[name].processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.hosts[name].processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        self.kill_host(name)

    def _reap(self, name: str) -> None:
        for process in self.hosts[name].processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.hosts[name].processes.clear()

    # -- the database host --------------------------------------------------------------------------------
    def start_database_host(self) -> None:
        db = self.hosts["db"]
        self.start(
            "db",
            ["redis-server", "--bind", db.address, "--port", str(REDIS_PORT), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            os.environ.copy(),
            self.root / "redis.log",
        )  # fmt: skip
        pg_root = self.postgres_data.parent
        pg_root.mkdir()
        shutil.chown(pg_root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_postgres, str(pg_bin("initdb")), "-D", str(self.postgres_data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8"],
            check=True, capture_output=True,
        )  # fmt: skip
        with (self.postgres_data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.gateway}/24 trust\n")
        options = f"-p {POSTGRES_PORT} -k {pg_root} -c listen_addresses={db.address} -c fsync=off"
        subprocess.run(
            self.command_on(
                "db",
                [*as_postgres, str(pg_bin("pg_ctl")), "-D", str(self.postgres_data), "-o", options,
                 "-l", str(pg_root / "log"), "-w", "start"],
            ),
            check=True, capture_output=True,
        )  # fmt: skip
        wait_for(self._redis_answers, timeout=20, what="Redis on the db host")
        upgrade_to_head(self.database_url)

    def _redis_answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.redis_url, socket_connect_timeout=1).ping())
        except redis.exceptions.ConnectionError:
            return False

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.hosts['db'].address}:{POSTGRES_PORT}/postgres"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.hosts['db'].address}:{REDIS_PORT}/0"

    def destroy(self, keep_logs: Path | None = None) -> None:
        """Tear everything down; the processes' logs are kept in `keep_logs` when given."""
        for log in self.root.glob("*.log") if keep_logs is not None else ():
            shutil.copy(log, keep_logs / log.name)
        for name in HOSTS:
            with contextlib.suppress(Exception):
                self.kill_host(name)
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        for veth in self._veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


class Service:
    """The nnforge processes of the cluster: the API on `api`, a worker per worker host, all with
    `settings` (each worker host with its own NNFORGE_HOME, as separate machines have)."""

    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        self.cluster, self.settings = cluster, settings
        self.engine = make_engine(settings.resolved_database_url)
        self.factory = make_session_factory(self.engine)
        self.logs: dict[str, Path] = {}

    def env(self, name: str, settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
        home = self.cluster.root / f"home-{name}"
        return service_env(settings.model_copy(update={"nnforge_home": home})) | (extra or {})

    def start_api(self) -> str:
        api = self.cluster.hosts["api"]
        settings = self.settings.model_copy(update={"host": api.address, "port": API_PORT})
        self.logs["api"] = self.cluster.root / "api.log"
        env = self.env("api", settings)
        process = self.cluster.start("api", api_command(settings), env, self.logs["api"])
        url = f"http://{api.address}:{API_PORT}"

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited:\n{self.log_of('api')[-3000:]}")
            try:
                return httpx2.get(f"{url}/livez", timeout=2).status_code == 200
            except httpx2.TransportError:
                return False

        wait_for(ready, timeout=60, what="the API on its host")
        return url

    def start_worker(
        self, name: str, *, settings: Settings | None = None, extra_env: dict[str, str] | None = None
    ) -> Callable[[], None]:
        """Start a `celery worker -c 1` on host `name`; returns the wait for it to be ready (workers start
        side by side)."""
        settings = (settings or self.settings).model_copy(update={"worker_concurrency": 1})
        log = self.logs[name] = self.cluster.root / f"{name}-{time.monotonic_ns()}.log"
        process = self.cluster.start(name, worker_command(settings), self.env(name, settings, extra_env), log)

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the worker on {name} exited:\n{log.read_text()[-3000:]}")
            return b"ready." in log.read_bytes()

        return lambda: wait_for(ready, timeout=120, what=f"the worker on {name}")

    def log_of(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def end_leftover_jobs(self) -> None:
        """The harness's cleanup between tests, not a transition of the service: what a test left queued or
        running ends as cancelled, so no later test's worker trains it."""
        with transaction(self.factory) as session:
            session.execute(
                sa.text(
                    "UPDATE job SET status = 'cancelled', lease_owner = NULL, finished_at = now() "
                    "WHERE status IN ('queued', 'running')"
                )
            )


@dataclass(frozen=True)
class Worker:
    """What a worker host runs: `name` tells variants apart; `settings` and `env` are what differs from the
    default."""

    name: str = "default"
    settings: Settings | None = field(default=None, compare=False)
    env: dict[str, str] | None = field(default=None, compare=False)


DEFAULT_WORKER = Worker()


@dataclass
class Stack:
    cluster: Cluster
    service: Service
    url: str
    token: str
    workers: dict[str, Worker | None] = field(default_factory=dict)  # what each worker host runs now

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def use(self, **hosts: Worker | None) -> None:
        """Each named host runs that worker (None: none); only hosts running something else restart, side
        by side (a worker's start is seconds of imports)."""
        waits = []
        for name, wanted in hosts.items():
            current = self.workers.get(name)
            if current == wanted:
                continue
            if current is not None:
                self.cluster.kill_host(name)
            self.workers[name] = wanted
            if wanted is not None:
                waits.append(self.service.start_worker(name, settings=wanted.settings, extra_env=wanted.env))
        for wait in waits:
            wait()

    def kill(self, name: str) -> None:
        """The host is gone: SIGKILL to every process on it."""
        self.cluster.kill_host(name)
        self.workers[name] = None
