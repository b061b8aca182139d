"""The database's disk fills up: PostgreSQL's data folder on a small tmpfs (its WAL kept elsewhere, as
deployments should), and the embedded default's NNFORGE_HOME (SQLite and the filesystem broker) on one.
A running job pauses (its writes wait for space, as through an outage), writes get 507 with a problem
detail that says so, reads go on, nothing is corrupted, and once space is freed the job finishes with every
step once and new jobs run. Mounting needs root (CI has it)."""

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from jobs import job_row, session_factory, steps_of
from netns_cluster import pg_bin
from services import PrivateRedis
from support import WorkerProcess, free_port, wait_for

from app.api.main import create_app
from app.api.tokens import create_token
from app.core.queue import ensure_broker_folders
from app.core.settings import Settings
from app.db.engine import transaction
from app.db.migrate import upgrade_to_head
from app.db.tables import Checkpoint

EPOCHS, BATCH_SIZE = 15, 16
SPEC = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [64]},
    "optimizer": {"name": "momentum", "lr": 0.02},
    "training": {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "seed": 1, "checkpoint": {"every_epochs": 1}},
}
TOTAL_STEPS = EPOCHS * -(-1258 // BATCH_SIZE)
UPLOAD = "a,b,label\n" + "".join(f"{i},{i * 7 % 13},{i % 2}\n" for i in range(20_000))  # ~250 KB


@contextlib.contextmanager
def small_disk(size_mib: int) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = Path(tempfile.mkdtemp(prefix="nnforge-disk-"))
    mount.chmod(0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no space left."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    with filler.open("ab", buffering=0) as out, contextlib.suppress(OSError):  # the last partial page too
        while True:
            out.write(b"\0" * 512)
    return filler


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    server = PrivateRedis()
    try:
        yield server.url
    finally:
        server.close()


@contextlib.contextmanager
def postgres_on(disk: Path, wal: Path) -> Iterator[str]:
    """A PostgreSQL cluster whose data folder is on `disk` and whose WAL is not (a full WAL disk stops
    PostgreSQL altogether: it cannot go on without its log)."""
    if pg_bin("initdb") is None:
        pytest.skip("PostgreSQL's server binaries (initdb) are not installed")
    port, data = free_port(), disk / "data"
    for folder in (disk, wal):
        shutil.chown(folder, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(pg_bin("initdb")), "-D", str(data), "-X", str(wal / "pg_wal"), "-U", "postgres",
         "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -k {wal} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*as_postgres, str(pg_bin("pg_ctl")), "-D", str(data)]
    start = [*ctl, "-o", options, "-l", str(wal / "log"), "-w", "start"]
    subprocess.run(start, check=True, capture_output=True)
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        upgrade_to_head(url)
        yield url
    finally:
        subprocess.run([*ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(wal, ignore_errors=True)


def client_for(settings: Settings) -> TestClient:
    factory = session_factory(settings)
    with transaction(factory) as session:
        token = create_token(session=session, owner=f"disk-{uuid.uuid4().hex[:6]}").secret
    client = TestClient(create_app(settings))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def run_through_a_full_disk(settings: Settings, disk: Path, log: Path) -> None:
    """The whole story on one stack: a job pauses while the disk is full, writes get 507, reads work, and
    after space is freed the job finishes, intact, and a new job runs."""
    factory = session_factory(settings)
    worker = WorkerProcess(settings, log)
    try:
        with client_for(settings) as client:
            submitted = client.post("/v1/jobs", json=SPEC | {"name": "through a full disk"})
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
            wait_for(lambda: job_row(factory, job_id).epoch >= 2, timeout=120, what="epoch 2")

            filler = fill(disk)
            wait_for(lambda: b"no space left on the database's disk" in log.read_bytes(), timeout=60,
                     what="the job's writes to meet the full disk")  # fmt: skip
            paused_at = job_row(factory, job_id).step
            refused = client.post("/v1/datasets", files={"file": ("big.csv", UPLOAD.encode())},
                                  data={"label_column": "label"})  # fmt: skip
            assert refused.status_code == 507, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert "no space left on the database's disk" in refused.json()["detail"]
            read = client.get(f"/v1/jobs/{job_id}")  # reads go on
            assert read.status_code == 200 and read.json()["status"] in ("running", "queued")
            assert client.get("/v1/jobs").status_code == 200
            assert job_row(factory, job_id).step == paused_at  # paused, not racing on unrecorded

            filler.unlink()  # an operator frees space
            job = wait_for(
                lambda: (row := job_row(factory, job_id)).status not in ("queued", "running") and row,
                timeout=180,
                what="the job to finish once space is back",
            )
            assert job.status == "succeeded", (job.error_type, job.error_message)
            assert steps_of(factory, job_id) == list(range(1, TOTAL_STEPS + 1))
            lines = client.get(f"/v1/jobs/{job_id}/logs").json()["items"]  # the pause, in the job's own log
            assert any("no space left on the database's disk" in line["message"] for line in lines)
            with factory() as session:  # every checkpoint reads back as written
                for row in session.scalars(sa.select(Checkpoint).where(Checkpoint.job_id == job_id)):
                    assert hashlib.sha256(row.data).hexdigest() == row.sha256

            again = client.post("/v1/jobs", json=SPEC | {"name": "after the disk was freed"})
            assert again.status_code == 202, again.text
            wait_for(
                lambda: job_row(factory, again.json()["id"]).status == "succeeded",
                timeout=180,
                what="a new job to succeed",
            )
    finally:
        worker.stop()


def test_postgresql_with_a_full_data_disk_pauses_jobs_and_refuses_writes_with_507(tmp_path: Path) -> None:
    wal = Path(tempfile.mkdtemp(prefix="nnforge-wal-"))
    with small_disk(96) as disk, postgres_on(disk, wal) as url, private_redis() as redis_url:
        settings = Settings(
            database_url=url,
            redis_url=redis_url,
            nnforge_home=tmp_path / "home",
            heartbeat_seconds=0.2,
            lease_seconds=3.0,
            reconcile_seconds=0.5,
            dry_run_timeout_seconds=60,  # the dry run's bound is not under test: room for a loaded machine
        )
        run_through_a_full_disk(settings, disk, tmp_path / "worker.log")
        with session_factory(settings)() as session:  # PostgreSQL's own check of the tables and indexes
            session.execute(sa.text("CREATE EXTENSION IF NOT EXISTS amcheck"))
            for index in session.scalars(
                sa.text("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                        "WHERE c.relkind = 'i' AND am.amname = 'btree' "
                        "AND c.relnamespace = 'public'::regnamespace")
            ):  # fmt: skip
                session.execute(sa.text("SELECT bt_index_check(CAST(:index AS regclass), true)"),
                                {"index": index})  # fmt: skip


def test_the_embedded_default_with_a_full_home_pauses_jobs_and_refuses_writes_with_507(
    tmp_path: Path,
) -> None:
    with small_disk(24) as home:
        settings = Settings(
            nnforge_home=home,
            heartbeat_seconds=0.2,
            lease_seconds=3.0,
            reconcile_seconds=0.5,
            dry_run_timeout_seconds=60,
        )
        upgrade_to_head(settings.resolved_database_url)
        ensure_broker_folders(settings)
        run_through_a_full_disk(settings, home, tmp_path / "worker.log")
        with session_factory(settings)() as session:
            assert session.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
