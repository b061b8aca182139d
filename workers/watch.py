"""How a task waits for its job's training process: up to MAX_JOB_SECONDS; stopping it (SIGTERM, then SIGKILL)
once a cancel has gone CANCEL_GRACE_SECONDS without effect (a step that outlasts the grace never reaches
the point where the process reads it); and noting its memory, so that a SIGKILL by the kernel's OOM killer
reads as out_of_memory rather than a lost worker."""

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core.settings import Settings
from app.db.job_state import JobStatus
from app.db.tables import Job

TERM_SECONDS = 5.0  # between SIGTERM and SIGKILL: a process that answers SIGTERM ends its job itself
log = logging.getLogger("nnforge.worker")


class TrainingProcess(Protocol):
    """A job's training process as the task waits on it: a standby's Popen or a zygote's child."""

    pid: int

    def wait(self, timeout: float | None = None) -> int: ...


@dataclass(frozen=True)
class Ending:
    code: int | None  # the exit code as Popen gives it (negative: a signal); None: stopped at MAX_JOB_SECONDS
    cancelled: bool = False  # stopped after CANCEL_GRACE_SECONDS of a cancel it did not act on
    peak_rss: int = 0  # the most resident memory seen, sampled as it ran
    oom_killed: bool = False  # its cgroup's OOM kill count rose while it ran

    def out_of_memory(self, limit: int) -> bool:
        """Killed (SIGKILL) by the kernel for memory: its cgroup says so, or it was at its limit."""
        return self.code == -signal.SIGKILL and (self.oom_killed or self.peak_rss >= 0.9 * limit)


def watch(process: TrainingProcess, settings: Settings, factory: sessionmaker[Session], token: str) -> Ending:
    """Wait for `process`, which runs the job that lease `token` claims."""
    deadline = time.monotonic() + settings.max_job_seconds
    poll = min(1.0, settings.cancel_grace_seconds / 4)
    events = _memory_events(process.pid)
    kills = _oom_kills(events)
    job_id: str | None = None
    cancel_seen: float | None = None
    peak = 0
    while True:
        try:
            code = process.wait(timeout=max(0.0, min(poll, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
        else:
            return Ending(code, peak_rss=peak, oom_killed=_oom_kills(events) > kills)
        if time.monotonic() >= deadline:
            # SIGKILL, not SIGTERM: a SIGTERM would hand the job back to the queue instead of ending it.
            _kill(process)
            return Ending(None, peak_rss=peak)
        peak = max(peak, _rss(process.pid))
        job_id = job_id or _leased_job(factory, token)
        if job_id is not None and _cancel_requested(factory, job_id, token):
            cancel_seen = cancel_seen or time.monotonic()
            if time.monotonic() - cancel_seen >= settings.cancel_grace_seconds:
                log.warning(
                    "job %s: cancel not taken %g s after it was seen (CANCEL_GRACE_SECONDS); stopping %d",
                    job_id,
                    settings.cancel_grace_seconds,
                    process.pid,
                )
                return Ending(_stop(process), cancelled=True, peak_rss=peak)


def _stop(process: TrainingProcess) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=TERM_SECONDS)
    except subprocess.TimeoutExpired:
        return _kill(process)


def _kill(process: TrainingProcess) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def _leased_job(factory: sessionmaker[Session], token: str) -> str | None:
    try:
        with factory() as session:
            return session.scalar(
                select(Job.id).where(Job.lease_owner == token, Job.status == JobStatus.RUNNING)
            )
    except SQLAlchemyError:  # an outage: the next poll tries again
        return None


def _cancel_requested(factory: sessionmaker[Session], job_id: str, token: str) -> bool:
    try:
        with factory() as session:
            return bool(
                session.scalar(
                    select(Job.cancel_requested).where(
                        Job.id == job_id, Job.lease_owner == token, Job.status == JobStatus.RUNNING
                    )
                )
            )
    except SQLAlchemyError:
        return False


def _rss(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmRSS:")), 0)


def _memory_events(pid: int) -> Path | None:
    """The cgroup v2 memory.events file of the process's cgroup (None where there is none)."""
    try:
        entry = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    paths = [line.removeprefix("0::") for line in entry if line.startswith("0::")]
    events = Path("/sys/fs/cgroup", *(paths[0].strip("/").split("/") if paths else []), "memory.events")
    return events if paths and events.exists() else None


def _oom_kills(events: Path | None) -> int:
    if events is None:
        return 0
    with contextlib.suppress(OSError):
        for line in events.read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    return 0
