"""`nnforge serve`: migrate, then run the API and a worker (WORKER_CONCURRENCY slots) as supervised child
processes (restarted when they die; app.client.launcher) and stop them together. `nnforge api` (the API
process here, in the Dockerfile and in docker-compose.yml) runs uvicorn with the settings of
app.core.settings."""

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import uvicorn

from app.api.tokens import create_token
from app.client.launcher import POLL_SECONDS, Child, CrashLoop, Supervisor
from app.core.queue import QUEUES_FOR_WORKER, ensure_broker_folders
from app.core.settings import Settings
from app.core.slow_clients import ReadTimeouts, guarded_protocol
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.migrate import upgrade_to_head

STOP_GRACE_SECONDS = 15  # the worker's warm shutdown: its training processes checkpoint and hand back


def worker_device(settings: Settings) -> str:
    """gpu or cpu, decided without touching CUDA in this process (nvidia-smi answers or not)."""
    if settings.worker_device != "auto":
        return settings.worker_device
    smi = shutil.which("nvidia-smi")
    if smi and subprocess.run([smi, "-L"], capture_output=True, timeout=10).returncode == 0:
        return "gpu"
    return "cpu"


def worker_concurrency(settings: Settings, device: str) -> int:
    """Jobs one worker trains at once: WORKER_CONCURRENCY, else one per GPU worker, else enough to use the
    cores (each training process uses TORCH_THREADS of them)."""
    if settings.worker_concurrency is not None:
        return settings.worker_concurrency
    if device == "gpu":
        return 1
    return max(1, len(os.sched_getaffinity(0)) // settings.torch_threads)


def worker_command(settings: Settings) -> list[str]:
    device = worker_device(settings)
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(worker_concurrency(settings, device)),
        "--queues",
        ",".join(QUEUES_FOR_WORKER[device]),
        "--hostname",
        f"{device}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


API_APP = "app.api.main:create_app"


def api_command(settings: Settings, *, app: str = API_APP) -> list[str]:
    """The API process's command line: `nnforge api`, which reads the other settings from the environment."""
    return [
        sys.executable,
        "-m",
        "app.client.cli",
        "api",
        "--app",
        app,
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]


def uvicorn_config(settings: Settings, *, app: str = API_APP) -> uvicorn.Config:
    """uvicorn's settings from ours, with the read timeouts it lacks (app.core.slow_clients)."""
    timeouts = ReadTimeouts(
        header_seconds=settings.header_timeout_seconds,
        body_seconds=settings.body_timeout_seconds,
        body_min_bytes_per_second=settings.body_min_bytes_per_second,
    )
    return uvicorn.Config(
        app,
        factory=True,
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(timeouts),
        ws="none",  # the API serves no WebSocket; an upgrade request is answered as plain HTTP
        timeout_keep_alive=settings.keep_alive_seconds,
        # uvicorn answers 503 once the open connections, the request's own included, reach the limit.
        limit_concurrency=settings.max_connections + 1,
        log_level="info",
    )


def run_api(settings: Settings, *, app: str = API_APP) -> None:
    """Serve the API in this process until SIGINT or SIGTERM."""
    refuse_open_without_auth(settings)
    uvicorn.Server(uvicorn_config(settings, app=app)).run()


def token_file(settings: Settings) -> Path:
    return settings.nnforge_home / "token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_open_without_auth(settings: Settings) -> None:
    if not settings.auth and not is_loopback(settings.host):
        raise SystemExit(f"refusing to listen on {settings.host} with AUTH off: anyone could use the service")


def prepare(settings: Settings) -> None:
    """Check the settings, migrate, create broker folders and, on first start, a local API token."""
    refuse_open_without_auth(settings)
    settings.nnforge_home.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.resolved_database_url)
    ensure_broker_folders(settings)
    path = token_file(settings)
    if settings.auth and not path.exists():
        engine = make_engine(settings.resolved_database_url)
        with transaction(make_session_factory(engine)) as session:
            token = create_token(session=session, owner="local", name="created by nnforge serve")
        engine.dispose()
        path.touch(mode=0o600)
        path.write_text(token.secret + "\n")


def stop_group(process: subprocess.Popen[bytes], *, grace: float = 30.0) -> None:
    """Stop a child started in a session of its own, with everything it started: SIGTERM to its process
    group, SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def service_log(settings: Settings) -> Path:
    """Where `nnforge serve` writes the worker's output (`nnforge logs` without a job prints it)."""
    return settings.nnforge_home / "logs" / "worker.log"


def serve(settings: Settings, *, with_worker: bool = True, verbose: bool = False) -> int:
    """Run the API and the worker as supervised children (app.client.launcher) until SIGINT or SIGTERM:
    0 when asked to stop, 1 when a child keeps crashing."""
    prepare(settings)
    children = [Child("API", api_command(settings))]
    if with_worker:
        # The worker's banner and warnings go to its log unless --verbose; the terminal keeps what users need.
        children.append(Child("worker", worker_command(settings), None if verbose else service_log(settings)))
    supervisor = Supervisor(children, say=lambda line: print(f"nnforge: {line}", flush=True))
    supervisor.start()
    url = f"http://{settings.host}:{settings.port}"
    auth = f' -H "Authorization: Bearer $(cat {token_file(settings)})"' if settings.auth else ""
    print(
        f"nnforge is up: {url}  (API docs: {url}/docs; Ctrl-C stops it)\n"
        + (
            f"API token: in {token_file(settings)} (the nnforge CLI reads it from there)\n"
            if settings.auth
            else ""
        )
        + (f"worker output: {service_log(settings)} (nnforge logs)\n" if with_worker and not verbose else "")
        + f"try: curl -s -X POST {url}/v1/jobs{auth} -H 'content-type: application/json' "
        '-d \'{"dataset": {"name": "digits"}, "model": {"arch": "mlp"}}\'',
        flush=True,
    )
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        while not stopping:
            supervisor.check()
            time.sleep(POLL_SECONDS)
    except CrashLoop as crash:
        print(f"nnforge: {crash}", file=sys.stderr, flush=True)
        code = 1
    supervisor.stop(STOP_GRACE_SECONDS)
    return code
