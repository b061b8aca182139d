"""Fixtures for the cluster tests: hosts in network namespaces (netns_cluster.py) running the real service,
with short leases. Where namespaces cannot be made (not root, no `ip`) the tests skip with the reason; CI
runs as root, and there a skip is a failure (tests/conftest.py)."""

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_cluster import DEFAULT_WORKER, Cluster, Service, Stack, usable

from app.api.tokens import create_token
from app.core.settings import Settings
from app.db.engine import transaction

# The fault tests' helpers find a job's training process (by its command line) and read its rows.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))


@pytest.fixture(scope="session")
def cluster_settings() -> Settings:
    return Settings(
        heartbeat_seconds=0.2,
        lease_seconds=3.0,
        reconcile_seconds=0.5,
        auth=True,
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        dry_run_timeout_seconds=60,  # the dry run's own bound is not under test: room for a loaded machine
    )


@pytest.fixture(scope="session")
def stack(cluster_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = usable()
    if reason is not None:
        pytest.skip(f"no cluster of network namespaces: {reason}")
    cluster = Cluster()
    try:
        cluster.build()
        cluster.start_database_host()
        settings = cluster_settings.model_copy(
            update={"database_url": cluster.database_url, "redis_url": cluster.redis_url}
        )
        service = Service(cluster, settings)
        url = service.start_api()
        with transaction(service.factory) as session:
            token = create_token(session=session, owner=f"cluster-{uuid.uuid4().hex[:6]}").secret
        stack = Stack(cluster, service, url, token)
        stack.use(w1=DEFAULT_WORKER, w2=DEFAULT_WORKER)
        yield stack
    finally:
        cluster.destroy(keep_logs=tmp_path_factory.mktemp("cluster-logs"))


@pytest.fixture
def live(stack: Stack) -> Iterator[Stack]:
    """The stack with no job left over from an earlier test; each test says which workers it needs
    (`Stack.use`), so that consecutive tests restart as few as they can."""
    stack.service.end_leftover_jobs()
    yield stack
    stack.service.end_leftover_jobs()
