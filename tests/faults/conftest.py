"""Fixtures for fault tests: private servers, a migrated database, settings with short leases."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from services import PrivatePostgres, PrivateRedis

from app.core.settings import Settings
from app.db.migrate import upgrade_to_head


def _needs(binary: str) -> None:
    import shutil

    if shutil.which(binary) is None and not list(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}")):
        pytest.skip(f"{binary} is not installed")  # a failure in CI (tests/conftest.py)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    _needs("redis-server")
    server = PrivateRedis()
    yield server
    server.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    _needs("initdb")
    server = PrivatePostgres()
    upgrade_to_head(server.url)
    yield server
    server.close()


@pytest.fixture
def fault_settings(
    private_redis: PrivateRedis, private_postgres: PrivatePostgres, tmp_path: Path
) -> Settings:
    return Settings(
        database_url=private_postgres.url,
        redis_url=private_redis.url,
        nnforge_home=tmp_path / "home",
        heartbeat_seconds=0.2,
        lease_seconds=3.0,
        reconcile_seconds=0.5,
        auth=False,
    )
