"""The zygote (workers/zygote.py): one process that imported torch forks a training process per job and
reports each one's exit as Popen would."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.db.migrate import upgrade_to_head
from workers.zygote import ForkServer, forks_for


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    home = tmp_path_factory.mktemp("zygote")
    upgrade_to_head(f"sqlite:///{home / 'nnforge.db'}")
    os.environ["NNFORGE_HOME"] = str(home)  # what the zygote's get_settings() reads
    try:
        server = ForkServer()
    finally:
        del os.environ["NNFORGE_HOME"]
    yield server
    server.close()


def test_each_line_forks_a_training_process_that_exits_as_the_trainer_returns(zygote: ForkServer) -> None:
    pids = []
    for n in range(3):  # one zygote serves job after job
        child = zygote.fork(f"cpu token-{n} job-{n}")  # an empty queue: nothing to claim, exit 0
        assert child is not None
        assert child.wait(timeout=120) == 0
        pids.append(child.pid)
    assert len(set(pids)) == 3 and zygote.process.pid not in pids
    assert zygote.alive()


def test_a_dead_zygote_is_noticed() -> None:
    server = ForkServer()
    server.process.kill()
    server.process.wait()
    assert not server.alive()
    assert server.fork("cpu token job") is None
    server.reports.close()


def test_jobs_that_may_use_cuda_are_never_forked() -> None:
    assert forks_for("cpu") and not forks_for("gpu")
    assert forks_for("any") == (not list(Path("/dev").glob("nvidia[0-9]*")))
