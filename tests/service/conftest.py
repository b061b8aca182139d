"""Real services for the service tests: a fresh PostgreSQL database, a Redis database, real Celery workers.

Without PostgreSQL or Redis these tests skip on a laptop; in CI a skip is a failure (tests/conftest.py)."""

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

# The live_stack fixture (an API server and a worker) is shared by the client, CLI and browser tests.
from live_stack import live_stack  # noqa: F401

from app.api.main import create_app
from app.api.tokens import create_token
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.migrate import upgrade_to_head

POSTGRES_ADMIN_URL = os.environ.get(
    "NNFORGE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("NNFORGE_TEST_REDIS", "redis://127.0.0.1:6379")


def _missing(service: str, error: Exception) -> None:
    pytest.skip(f"{service} is not reachable ({error})")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin = sa.create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"nnforge_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        _missing("PostgreSQL", error)
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    upgrade_to_head(url)
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def own_postgres_database(prefix: str) -> Iterator[str]:
    """A migrated PostgreSQL database of a test's own, dropped afterwards: for tests with a worker that must
    not meet the jobs other modules left in the session's database (a claim takes the fairest queued job,
    and a live worker's reconciler re-sends what its broker lacks)."""
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    upgrade_to_head(url)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_database(number: int) -> str:
    import redis

    url = f"{REDIS_TEST_URL}/{number}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except redis.exceptions.ConnectionError as error:
        _missing("Redis", error)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A test runs once on the session's PostgreSQL database and once on a fresh SQLite file."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    url = f"sqlite:///{tmp_path / 'nnforge.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="module", autouse=True)
def no_queued_job_outlives_its_module(postgres_url: str) -> Iterator[None]:
    """Modules share the session's PostgreSQL database, and a worker claims the fairest queued job of its
    queue, not the one its message names. When a module ends (after its workers stopped: autouse fixtures
    are torn down last), what it left queued (API tests POST without a worker) or running (a job whose worker
    stopped mid-run, which a later worker's reconciler would requeue) ends as cancelled, so no later
    module's worker trains it instead of its own."""
    yield
    from app.db.base import utcnow
    from app.db.job_state import JobStatus
    from app.db.tables import Job

    engine = make_engine(postgres_url)
    with transaction(make_session_factory(engine)) as session:
        session.execute(  # the test harness's own cleanup, not a transition of the service
            sa.update(Job)
            .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .values(status=JobStatus.CANCELLED, lease_owner=None, finished_at=utcnow())
        )
    engine.dispose()


@pytest.fixture(scope="module")
def api_settings(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=postgres_url,
        redis_url=redis_database(12),
        nnforge_home=tmp_path_factory.mktemp("home"),
        heartbeat_seconds=0.2,
    )


def new_token(settings: Settings, owner: str) -> str:
    engine = make_engine(settings.resolved_database_url)
    with transaction(make_session_factory(engine)) as session:
        secret = create_token(session=session, owner=owner).secret
    engine.dispose()
    return secret


@pytest.fixture(scope="module")
def client(api_settings: Settings) -> Iterator[TestClient]:
    """An API client authenticated as a fresh owner."""
    with TestClient(create_app(api_settings)) as test_client:
        test_client.headers["Authorization"] = (
            f"Bearer {new_token(api_settings, f'owner-{uuid.uuid4().hex[:6]}')}"
        )
        yield test_client
