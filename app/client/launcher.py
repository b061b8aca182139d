"""The embedded launcher's supervision: keep each child of `nnforge serve` (the API, the worker) running.

A child that exits is restarted after a backoff, its exit status logged, while the others go on (the API
stays up while the worker restarts). A child that keeps dying — more than CRASH_LOOP_RESTARTS restarts
within CRASH_LOOP_WINDOW_SECONDS — stops everything with a message naming it and its last exit status:
restarting it again would only hide the fault. Each child runs in a session of its own, so that what it
started (a worker's pool and training processes) is stopped with it and never outlives it."""

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

RESTART_BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0)  # before the 1st, 2nd, … restart within the window
CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.2


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


@dataclass
class Child:
    """One supervised process: what to run, and where its output goes (None: this terminal)."""

    name: str
    command: Sequence[str]
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    exits: deque[float] = field(default_factory=deque)  # monotonic times of recent exits
    restart_at: float | None = None
    last_exit: str = ""

    def start(self) -> None:
        output: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                list(self.command), stdout=output, stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()  # the child holds its own copy
        self.restart_at = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_leftovers(self) -> None:
        """What the exited child started (pool processes, training processes) goes with it."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


class CrashLoop(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(
            f"the {child.name} {child.last_exit} and has been restarted {CRASH_LOOP_RESTARTS} times within "
            f"{CRASH_LOOP_WINDOW_SECONDS:g} s: giving up"
            + (f" (its output: {child.log_path})" if child.log_path else "")
        )
        self.child = child


class Supervisor:
    def __init__(
        self,
        children: list[Child],
        *,
        say: Callable[[str], None],
        backoff: Sequence[float] = RESTART_BACKOFF_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children, self.say, self.backoff, self.clock = children, say, backoff, clock

    def start(self) -> None:
        for child in self.children:
            child.start()

    def check(self) -> None:
        """Notice exits, schedule and make restarts; raise CrashLoop for a child that keeps dying."""
        now = self.clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    assert child.process is not None
                    self.say(f"restarted the {child.name} (pid {child.process.pid})")
                continue
            if child.process is None or (code := child.process.poll()) is None:
                continue
            child.kill_leftovers()
            child.last_exit = describe_exit(code)
            child.exits.append(now)
            while child.exits and now - child.exits[0] > CRASH_LOOP_WINDOW_SECONDS:
                child.exits.popleft()
            if len(child.exits) > CRASH_LOOP_RESTARTS:
                raise CrashLoop(child)
            delay = self.backoff[min(len(child.exits), len(self.backoff)) - 1]
            child.restart_at = now + delay
            self.say(f"the {child.name} {child.last_exit}; restarting it in {delay:g} s")

    def stop(self, grace: float) -> None:
        """SIGTERM each running child (a worker's warm shutdown hands its jobs back), SIGKILL its whole
        session after `grace` seconds; nothing a child started outlives this."""
        running = [child for child in self.children if child.running()]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = self.clock() + grace
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        for child in self.children:
            child.kill_leftovers()
