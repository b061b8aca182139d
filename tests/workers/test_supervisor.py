"""Trainer registries (workers/supervisor.py): a worker notes its training processes under
NNFORGE_HOME/run/worker-<pid>/ so a warm shutdown can reach them; a SIGKILLed worker never cleans up, so a
starting worker removes what no live worker owns."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import WorkerProcess

from app.core.queue import ensure_broker_folders
from app.core.settings import Settings
from app.db.migrate import upgrade_to_head
from workers.supervisor import remove_stale_registries, trainer_registry


def _gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def sleeper() -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def _registry(settings: Settings, worker_pid: int, *trainer_pids: int) -> Path:
    folder = trainer_registry(settings, worker_pid)
    folder.mkdir(parents=True)
    for pid in trainer_pids:
        (folder / str(pid)).touch()
    return folder


def test_remove_stale_registries_keeps_only_those_of_other_live_workers(tmp_path: Path, sleeper: int) -> None:
    settings = Settings(nnforge_home=tmp_path)
    gone = _registry(settings, _gone_pid(), 4242, 4343)  # a SIGKILLed worker's, its pid files left
    live = _registry(settings, os.getpid(), 4444)  # another worker, still running
    own = _registry(settings, sleeper, 4545)  # an earlier worker's with the pid this worker now has
    other = trainer_registry(settings, 1).parent / "worker-notes"  # not a registry
    other.mkdir()

    removed = remove_stale_registries(settings, sleeper)

    assert sorted(removed) == sorted([gone, own])
    assert not gone.exists() and not own.exists()
    assert (live / "4444").exists() and other.exists()
    assert remove_stale_registries(settings, sleeper) == []  # nothing left to remove


def test_remove_stale_registries_without_a_run_folder_removes_nothing(tmp_path: Path) -> None:
    assert remove_stale_registries(Settings(nnforge_home=tmp_path / "new"), os.getpid()) == []


def test_a_starting_worker_removes_the_registry_of_a_killed_worker(tmp_path: Path) -> None:
    settings = Settings(nnforge_home=tmp_path / "home")  # SQLite and a filesystem broker in it
    settings.nnforge_home.mkdir()
    upgrade_to_head(settings.resolved_database_url)
    ensure_broker_folders(settings)
    stale = _registry(settings, _gone_pid(), 4242)
    worker = WorkerProcess(settings, tmp_path / "worker.log")  # returns once the worker is ready
    try:
        assert not stale.exists(), worker.log_path.read_text()[-2000:]
        assert f"removed {stale}: the worker that wrote it is gone" in worker.log_path.read_text()
    finally:
        worker.stop()
