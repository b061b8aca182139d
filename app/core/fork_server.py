"""The warm server app/core/child_process.py forks its children from: `python -m app.core.fork_server NAME
MODULE…` listens on the abstract UNIX socket NAME, imports the modules (torch with the dry check) once,
says "ready" on stdout and forks a child per connection. It exits when its parent's end of stdin closes.

Each child sends its pid (so the parent can kill it), reads the call (target, args, memory bytes, CPU
seconds), caps its address space at its size then plus those bytes and its CPU time, runs the target and
sends back ("ok", value), ("spec", issues), ("memory", reason) or ("crashed", reason). Messages are
length-prefixed pickles between two processes of one service, never anything a client sent as such.

A preloaded module must leave the server with no threads of its own (torch.set_num_threads(1) before any
tensor operation, no thread pools started at import): a fork copies only the forking thread, so a lock any
other thread held at that moment stays held, forever, in the child.
"""

import importlib
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from models.errors import SpecError

_LENGTH = struct.Struct("!Q")
PID = struct.Struct("!i")


def send(sock: socket.socket, value: Any) -> None:
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(blob)) + blob)


def receive(sock: socket.socket) -> Any:
    (length,) = _LENGTH.unpack(receive_exactly(sock, _LENGTH.size))
    return pickle.loads(receive_exactly(sock, length))


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(min(size - len(buffer), 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        buffer += chunk
    return bytes(buffer)


def serve(name: str, modules: list[str]) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)  # Linux's abstract namespace: no file to clean up
    listener.listen(128)
    for module in modules:
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    print("ready", flush=True)
    os.dup2(2, 1)  # nobody reads that pipe from now on: what children print goes to the parent's stderr
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            _child(connection)
        connection.close()


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()  # returns when the parent's end closes: it exited or stopped us
    os._exit(0)


def _child(connection: socket.socket) -> None:
    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        connection.sendall(PID.pack(os.getpid()))
        target, args, memory_bytes, cpu_seconds = receive(connection)
        _limit_address_space(memory_bytes)
        # A backstop should the parent die before its timeout: one thread's CPU time never outruns the clock.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        try:
            module, name = target.split(":")
            outcome: tuple[str, Any] = ("ok", getattr(importlib.import_module(module), name)(*args))
        except BaseException as error:  # reported to the parent, which decides what the user hears
            outcome = _outcome(error)
        try:
            send(connection, outcome)
        except MemoryError:
            send(connection, ("memory", "ran out of memory"))
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _outcome(error: BaseException) -> tuple[str, Any]:
    if _out_of_memory(error):
        return "memory", "ran out of memory"
    if isinstance(error, SpecError):
        return "spec", error.issues
    return "crashed", f"{type(error).__name__}: {error}"


def _out_of_memory(error: BaseException | None) -> bool:
    """MemoryError, or torch's allocator failing, anywhere in the chain of causes (the dry check reports
    every failure of the network as the spec's)."""
    while error is not None:
        if isinstance(error, MemoryError) or "can't allocate memory" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _limit_address_space(extra: int) -> None:
    size = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmSize:")
    )
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
