"""`nnforge delete`, `nnforge datasets delete`, `nnforge usage` and the Python client's deletion methods,
run as a user runs them (a subprocess without a terminal) against a real API server on PostgreSQL."""

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import new_token
from live_stack import LiveStack
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_checkpoints, finished_job
from support import ROOT
from typer.testing import CliRunner

from app.client import cli_storage
from app.client.cli import cli
from app.client.client import Client, NnforgeError
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Job


@pytest.fixture(scope="module")
def db(live_stack: LiveStack) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(live_stack.settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def user(live_stack: LiveStack) -> tuple[str, str]:
    """A fresh owner and its token: bulk deletions select among this owner's jobs only."""
    owner = f"cli-{uuid.uuid4().hex[:6]}"
    return owner, new_token(live_stack.settings, owner)


def _nnforge(stack: LiveStack, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "NNFORGE_URL": stack.url,
        "NNFORGE_TOKEN": token,
        "HOME": "/nonexistent",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-c", "from app.client.cli import main; main()", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def _exists(db: sessionmaker[Session], job_id: str) -> bool:
    with db() as session:
        return session.get(Job, job_id) is not None


def test_delete_without_a_terminal_refuses_unless_yes(
    live_stack: LiveStack, db: sessionmaker[Session], user: tuple[str, str]
) -> None:
    owner, token = user
    with transaction(db) as session:
        job_id = finished_job(session, owner, status="failed")

    refused = _nnforge(live_stack, token, "delete", job_id)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert job_id in refused.stdout  # it lists what it would delete
    assert _exists(db, job_id)

    done = _nnforge(live_stack, token, "delete", job_id, "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted 1 of 1 jobs" in done.stderr and not _exists(db, job_id)


def test_delete_refuses_a_queued_job_and_deletes_the_finished_ones_named(
    live_stack: LiveStack, db: sessionmaker[Session], user: tuple[str, str]
) -> None:
    owner, token = user
    with transaction(db) as session:
        queued = finished_job(session, owner, status="queued")
        done = finished_job(session, owner, status="cancelled")
    run = _nnforge(live_stack, token, "delete", queued, done, "--yes", "-o", "json")
    assert run.returncode == 2
    assert json.loads(run.stdout)["deleted"] == [done]
    assert f"{queued} is queued: cancel it first" in run.stderr
    assert _exists(db, queued) and not _exists(db, done)
    missing = _nnforge(live_stack, token, "delete", str(uuid.uuid4()), "--yes")
    assert missing.returncode == 2 and "no job" in missing.stderr


def test_bulk_delete_by_status_and_age_lists_then_deletes_only_those(
    live_stack: LiveStack, db: sessionmaker[Session], user: tuple[str, str]
) -> None:
    owner, token = user
    with transaction(db) as session:
        old_failed = [finished_job(session, owner, status="failed", finished_days_ago=d) for d in (8, 30)]
        add_checkpoints(session, old_failed[0], epochs=2, nbytes=100)
        new_failed = finished_job(session, owner, status="failed", finished_days_ago=6)
        old_succeeded = finished_job(session, owner, status="succeeded", finished_days_ago=30)
        other_owner = finished_job(session, f"{owner}-other", status="failed", finished_days_ago=30)

    dry = _nnforge(live_stack, token, "delete", "--status", "failed", "--older-than", "7d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(line.split()[0] for line in dry.stdout.splitlines()) == sorted(old_failed)
    refused = _nnforge(live_stack, token, "delete", "--status", "failed", "--older-than", "7d")
    assert refused.returncode == 2 and "pass --yes" in refused.stderr

    run = _nnforge(live_stack, token, "delete", "--status", "failed", "--older-than", "7d", "--yes")

    assert run.returncode == 0, run.stderr
    assert "deleted 2 of 2 jobs" in run.stderr
    assert [_exists(db, j) for j in (*old_failed, new_failed, old_succeeded, other_owner)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    nothing = _nnforge(live_stack, token, "delete", "--status", "failed", "--older-than", "7d", "--yes")
    assert nothing.returncode == 0 and "no finished job matches" in nothing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name the jobs, or select them"),
        (("--status", "running"), "only finished jobs can be deleted"),
        (("--older-than", "seven days"), "is not an age like"),
        (("abc", "--status", "failed"), "name the jobs, or select them"),
    ],
)
def test_delete_refuses_a_selection_it_cannot_make(
    live_stack: LiveStack, user: tuple[str, str], args: tuple[str, ...], message: str
) -> None:
    run = _nnforge(live_stack, user[1], "delete", *args, "--yes")
    assert run.returncode == 2 and message in run.stderr, run.stderr


@pytest.mark.parametrize(("answer", "deleted"), [("n\n", False), ("y\n", True)])
def test_delete_at_a_terminal_asks_first(
    live_stack: LiveStack,
    db: sessionmaker[Session],
    user: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    deleted: bool,
) -> None:
    owner, token = user
    with transaction(db) as session:
        job_id = finished_job(session, owner)
    monkeypatch.setattr(cli_storage, "interactive", lambda: True)
    env = {"NNFORGE_URL": live_stack.url, "NNFORGE_TOKEN": token}

    result = CliRunner().invoke(cli, ["delete", job_id], input=answer, env=env)

    assert "Delete these 1 jobs" in result.output
    assert result.exit_code == (0 if deleted else 1), result.output
    assert _exists(db, job_id) is not deleted


def test_datasets_delete_and_usage(live_stack: LiveStack, user: tuple[str, str]) -> None:
    _, token = user
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((20, 3), np.float32), y=np.arange(20) % 2)
    with Client(live_stack.url, token) as client:
        path = ROOT / "test-artifacts" / f"{uuid.uuid4().hex}.npz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(buffer.getvalue())
        try:
            dataset = client.upload_dataset(path)
        finally:
            path.unlink()

    usage = json.loads(_nnforge(live_stack, token, "usage", "-o", "json").stdout)
    assert usage["datasets"] == {"count": 1, "bytes": dataset["size"]}
    table = _nnforge(live_stack, token, "usage").stdout
    assert "datasets" in table and "(no limit)" in table

    refused = _nnforge(live_stack, token, "datasets", "delete", dataset["id"])
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    done = _nnforge(live_stack, token, "datasets", "delete", dataset["id"], "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(_nnforge(live_stack, token, "usage", "-o", "json").stdout)["datasets"]["count"] == 0
    missing = _nnforge(live_stack, token, "datasets", "delete", dataset["id"], "--yes")
    assert missing.returncode == 2 and "no dataset" in missing.stderr


def test_python_client_deletes_jobs_checkpoints_and_datasets(
    live_stack: LiveStack, db: sessionmaker[Session], user: tuple[str, str]
) -> None:
    owner, token = user
    with transaction(db) as session:
        job_id = finished_job(session, owner, best_epoch=3)
        first, middle, best = add_checkpoints(session, job_id, epochs=3, nbytes=50)
    with Client(live_stack.url, token) as client:
        job = client.job(job_id)
        job.delete_checkpoint(first)
        with pytest.raises(NnforgeError) as refused:
            job.delete_checkpoint(best)
        assert refused.value.status == 409
        assert [c["id"] for c in job.checkpoints()] == [middle, best]
        assert client.usage()["checkpoints"]["count"] == 2
        job.delete()
        with pytest.raises(NnforgeError) as gone:
            client.job(job_id)
        assert gone.value.status == 404
        with pytest.raises(NnforgeError) as no_dataset:
            client.delete_dataset(str(uuid.uuid4()))
        assert no_dataset.value.status == 404
