"""Work the API must not do on its own memory or time (a dry run, an upload's check): each call runs in a
child process forked from a warm server, under an address-space limit and a timeout, at most N at once.

A server (app/core/fork_server.py) starts once per API process and imports the modules its children run
(torch, for the dry run), so a fork costs milliseconds and the API process itself never imports them. A
target is named by its dotted path ("package.module:function"), so the parent never imports it either. The
child caps its address space at its size when forked plus `memory_bytes`: an allocation beyond fails there,
and the API process only hears what happened. A child still running at its timeout is killed (through a
pidfd, so a reused pid is never hit).
"""

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core import fork_server
from models.errors import SpecError

SERVER_START_SECONDS = 300.0  # its imports (torch) on a loaded machine; not counted in a call's timeout
# Servers by name, each with the modules it imports: "default" (torch: dry runs, checkpoint checks) and any
# other that registers, such as the torch-free one for uploads, which starts in a fraction of a second.
_PRELOAD: dict[str, list[str]] = {}
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()
_servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}


class ChildFailed(RuntimeError):
    """The child ran out of time or memory, or died; `kind` says which."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(detail)


class Overloaded(RuntimeError):
    """The child ran out of time without getting the CPU to use it: answered 503 with Retry-After."""

    retry_after = 5


STARVED_CPU_SHARE = 0.5  # a timed-out child that ran less than this share of its time on a CPU was starved


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class Busy(RuntimeError):
    """Every slot of this kind of work is taken: answered 429 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


def preload(*modules: str, server: str = "default") -> None:
    """Have `server` import `modules` when it starts (call at import time, before the first `call`)."""
    wanted = _PRELOAD.setdefault(server, [])
    wanted.extend(m for m in modules if m not in wanted)


def warm_up() -> None:
    """Start every server in the background, so that the first call does not wait for its imports."""
    for server in list(_PRELOAD):
        threading.Thread(
            target=_server_name, args=(server,), name=f"fork-server-{server}", daemon=True
        ).start()


def _server_name(server: str) -> str:
    """The running server's socket name, starting it (and waiting until it is ready) if need be."""
    with _locks_lock:
        lock = _locks.setdefault(server, threading.Lock())
    with lock:
        running = _servers.get(server)
        if running is not None and running[0].poll() is None:
            return running[1]
        name = f"nnforge-fork-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen(
            [sys.executable, "-m", "app.core.fork_server", name, *_PRELOAD.get(server, [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert process.stdout is not None
        ready = threading.Timer(SERVER_START_SECONDS, process.kill)
        ready.start()
        line = process.stdout.readline()
        ready.cancel()
        if line.strip() != b"ready":
            process.kill()
            raise RuntimeError(f"the fork server did not start (exit code {process.wait()})")
        _servers[server] = (process, name)
        return name


def call(target: str, *args: Any, memory_bytes: int, timeout_seconds: float, server: str = "default") -> Any:
    """`target(*args)` in a child forked from `server`. Raises the target's SpecError as is; anything else
    that goes wrong as ChildFailed("timeout" | "memory" | "crashed")."""
    with _connect(server, timeout_seconds) as sock:  # waits for a server still starting, untimed
        try:
            (pid,) = fork_server.PID.unpack(fork_server.receive_exactly(sock, fork_server.PID.size))
            pidfd = os.pidfd_open(pid)
        except (EOFError, OSError) as error:
            raise ChildFailed("crashed", f"could not start: {error}") from None
        deadline = time.monotonic() + timeout_seconds  # the child's own time
        try:
            fork_server.send(sock, (target, args, memory_bytes, math.ceil(timeout_seconds) + 1))
            sock.settimeout(max(0.0, deadline - time.monotonic()))
            kind, value = fork_server.receive(sock)
        except TimeoutError:
            used = _cpu_seconds(pid)
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if used < STARVED_CPU_SHARE * timeout_seconds:
                # It hardly ran: the machine was busy, which is no fault of what it was given.
                raise Overloaded(
                    f"the machine is too busy: it ran {used:.1f} s of CPU in {timeout_seconds:g} s; retry"
                ) from None
            raise ChildFailed("timeout", f"did not finish within {timeout_seconds:g} s") from None
        except (EOFError, OSError):
            raise ChildFailed("crashed", "ended abnormally (killed, or a fault in native code)") from None
        finally:
            os.close(pidfd)
    if kind == "ok":
        return value
    if kind == "spec":
        raise SpecError(value)
    raise ChildFailed(kind, value)


_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def slots(kind: str, limit: int) -> threading.BoundedSemaphore:
    """The `limit` slots of one kind of work in this process."""
    with _locks_lock:
        return _slots.setdefault((kind, limit), threading.BoundedSemaphore(limit))


def _connect(server: str, timeout_seconds: float) -> socket.socket:
    try:
        return _open(_server_name(server), timeout_seconds)
    except OSError:  # the server died since it was last seen: start it again, once
        process, _ = _servers[server]
        process.kill()
        process.wait()
        return _open(_server_name(server), timeout_seconds)


def _open(name: str, timeout_seconds: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_seconds)
    try:
        sock.connect("\0" + name)
    except OSError:
        sock.close()
        raise
    return sock


@contextmanager
def slot(kind: str, limit: int, *, wait: float, message: str) -> Iterator[None]:
    """Hold one of the `limit` slots of `kind`, waiting up to `wait` seconds for one; else Busy."""
    semaphore = slots(kind, limit)
    acquired = semaphore.acquire(timeout=wait) if wait > 0 else semaphore.acquire(blocking=False)
    if not acquired:
        raise Busy(message, retry_after=max(1, round(wait)))
    try:
        yield
    finally:
        semaphore.release()
