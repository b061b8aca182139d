"""What the Celery task does: hand the message's queue to a training process, which claims the fairest job
of that queue (app.db.job_state.claim, not necessarily the job the message named), wait for it
(workers.watch), and settle the job when the process could not: it crashed or was killed (for memory:
out_of_memory), ran past MAX_JOB_SECONDS, or was stopped CANCEL_GRACE_SECONDS after a cancel it ignored.

Each task process keeps a process ready for its next job. For jobs that cannot use CUDA, a zygote
(workers.zygote) that imported torch once and forks a training process per job in milliseconds. For the
others, a standby training process (`python -m workers.trainer --standby`), started as soon as the previous
job starts: it imports torch while that job trains and waits on stdin. Never a fork of a process that
touched CUDA."""

import functools
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.queue import make_celery, publish_job
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.job_state import ErrorKind, JobStatus
from app.db.tables import Job
from workers.job_store import JobStore, job_leased_by
from workers.watch import Ending, TrainingProcess, watch
from workers.zygote import STANDBY_PLACEHOLDER, ForkServer, forks_for

log = logging.getLogger("nnforge.worker")
_standby: subprocess.Popen[bytes] | None = None  # this task process's standby training process
_zygote: ForkServer | None = None  # this task process's fork server


def trainer_registry(settings: Settings, worker_pid: int) -> Path:
    """Where a worker's task processes note their training processes, so a warm shutdown can reach them."""
    return settings.nnforge_home.resolve() / "run" / f"worker-{worker_pid}"


def remove_stale_registries(settings: Settings, worker_pid: int) -> list[Path]:
    """Remove the trainer registries no live worker owns, at a worker's start (before its pool runs a task):
    those of workers that are gone (a SIGKILL leaves its registry behind) and the one bearing this worker's
    own pid (left by an earlier worker with the same pid: in a container the pid repeats at every restart).
    Their pid files name processes long gone, or someone else's by now: a warm shutdown must not signal
    them. A pid is only meaningful on this machine: NNFORGE_HOME/run is per host, as it always was."""
    run = trainer_registry(settings, worker_pid).parent
    removed = []
    for folder in sorted(run.glob("worker-*")) if run.exists() else []:
        pid = folder.name.removeprefix("worker-")
        if not pid.isdigit() or (int(pid) != worker_pid and _is_running(int(pid))):
            continue
        try:
            for pid_file in folder.iterdir():
                pid_file.unlink(missing_ok=True)
            folder.rmdir()
        except FileNotFoundError:  # another worker starting at the same moment removed it
            continue
        removed.append(folder)
    return removed


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def supervise(job_id: str, queue: str | None, settings: Settings) -> str:
    """Run the fairest job of the message's queue in a fresh process; returns how it ended for this
    delivery. `job_id` is the job the message was sent for; `queue` its queue (None in a message from before
    messages carried it: the job's)."""
    factory = _session_factory(settings.resolved_database_url)
    queue = queue or _queue_of(factory, job_id)
    if queue is None or not _any_queued(factory, queue):
        return "skipped"  # a duplicate delivery, or a job cancelled while queued: no process to start
    token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    ended = _run_trainer(settings, queue, f"{queue} {token} {job_id}", factory, token)
    if ended.code == 0:
        return "done"
    claimed = job_leased_by(factory, token, outage_seconds=settings.db_outage_seconds)
    if claimed is None:
        return "lease_lost"  # it died before it claimed a job, or the reconciler took the job back
    store = JobStore(factory, claimed, token, outage_seconds=settings.db_outage_seconds)
    return _settle(store, settings, ended)


@functools.cache
def _session_factory(url: str) -> sessionmaker[Session]:
    """This task process's database connection, kept from task to task (no connect between back-to-back
    jobs); one pooled connection, which the watch uses every second while a job trains."""
    return make_session_factory(make_engine(url, pool_size=1, max_overflow=1))


def _settle(store: JobStore, settings: Settings, ended: Ending) -> str:
    """The outcome of a run whose process ended without recording one."""
    if ended.code is None:
        message = f"the job ran past the limit of {settings.max_job_seconds} s"
        store.finish(status=JobStatus.FAILED, error_type=ErrorKind.TIMEOUT, error_message=message)
        return "timeout"
    if ended.cancelled:
        message = (
            f"cancelled on request; the training process had not stopped {settings.cancel_grace_seconds:g} s "
            "later (CANCEL_GRACE_SECONDS) and was stopped; its last checkpoint is kept"
        )
        store.finish(status=JobStatus.CANCELLED, error_type=ErrorKind.CANCELLED, error_message=message)
        return JobStatus.CANCELLED
    limit = settings.max_job_memory_bytes
    if ended.out_of_memory(limit):
        message = (
            f"out of memory: the kernel killed the training process (SIGKILL) at {ended.peak_rss:,} bytes "
            f"resident{' (an OOM kill in its cgroup)' if ended.oom_killed else ''}; "
            f"MAX_JOB_MEMORY_BYTES = {limit:,}"
        )
        log.error("job %s %s", store.job_id, message)
        store.finish(status=JobStatus.FAILED, error_type=ErrorKind.OUT_OF_MEMORY, error_message=message)
        return "out_of_memory"
    return settle_lost_run(store, settings, f"the training process ended with exit code {ended.code}")


def settle_lost_run(store: JobStore, settings: Settings, message: str) -> str:
    """A run that died: back to the queue while restarts remain, else failed as worker_lost."""
    settled = store.settle_lost_run(message)
    if settled is None:
        return "lease_lost"  # someone else settled it (the reconciler took the lapsed lease)
    if settled.status == JobStatus.QUEUED:
        publish_job(make_celery(settings), settled.job_id, settled.queue)
        log.warning("job %s: %s; requeued", settled.job_id, message)
    else:
        log.error("job %s failed: %s", settled.job_id, message)
    return settled.status


def _queue_of(factory: sessionmaker[Session], job_id: str) -> str | None:
    with factory() as session:
        return session.scalar(select(Job.queue).where(Job.id == job_id))


def _any_queued(factory: sessionmaker[Session], queue: str) -> bool:
    """Whether a claim could find anything: spares a training process for a message that has no job."""
    with factory() as session:
        found = session.scalar(
            select(Job.id).where(Job.status == JobStatus.QUEUED, Job.queue == queue).limit(1)
        )
        return found is not None


@worker_process_init.connect
def _start_first_standby(**_: Any) -> None:
    if forks_for("any"):  # a CPU machine: every job this process runs is forked
        start_zygote()
    else:
        start_standby()


def start_zygote() -> ForkServer:
    """This task process's fork server, started unless a live one is there."""
    global _zygote
    if _zygote is None or not _zygote.alive():
        if _zygote is not None:
            _zygote.close()
        _zygote = ForkServer()
    return _zygote


def start_standby() -> None:
    """Start this task process's standby training process unless a live one is waiting."""
    global _standby
    if _standby is None or _standby.poll() is not None:
        _standby = subprocess.Popen(
            [sys.executable, "-m", "workers.trainer", "--standby", STANDBY_PLACEHOLDER],
            stdin=subprocess.PIPE,
            start_new_session=True,  # its own process group: a terminal's Ctrl-C is ours
        )


def _take_standby(line: str) -> subprocess.Popen[bytes] | None:
    """Hand the line ("QUEUE TOKEN JOB_ID") to the standby process; None when none is alive to take it."""
    global _standby
    process, _standby = _standby, None
    if process is None or process.stdin is None or process.poll() is not None:
        return None
    try:
        process.stdin.write(f"{line}\n".encode())
        process.stdin.close()
    except OSError:  # it died meanwhile
        process.kill()
        process.wait()
        return None
    return process


def _start_training(queue: str, line: str) -> TrainingProcess | None:
    """A training process given the line; None when none could be started."""
    if forks_for(queue):
        process = start_zygote().fork(line)
        if process is None:  # the zygote died: a new one, which imports before it forks
            process = start_zygote().fork(line)
        return process
    standby = _take_standby(line)
    if standby is None:  # the standby died: a new one, which waits for its imports before it claims
        start_standby()
        standby = _take_standby(line)
    if standby is not None:
        start_standby()  # the next job's process imports torch while this one trains
    return standby


def _run_trainer(
    settings: Settings, queue: str, line: str, factory: sessionmaker[Session], token: str
) -> Ending:
    """How the training process ended (workers.watch)."""
    process = _start_training(queue, line)
    if process is None:
        return Ending(1)  # nothing claimed, nothing to settle; the reconciler sends the queue again
    registry = trainer_registry(settings, os.getppid())
    registry.mkdir(parents=True, exist_ok=True)
    pid_file = registry / str(process.pid)
    pid_file.touch()
    try:
        return watch(process, settings, factory, token)
    finally:
        pid_file.unlink(missing_ok=True)
        if not forks_for(queue):
            start_standby()  # unless the one started with this job is still waiting
