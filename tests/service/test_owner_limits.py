"""Per-owner limits hold exactly under concurrency, on PostgreSQL and on SQLite: a burst of POSTs queues no
more than MAX_QUEUED_JOBS_PER_OWNER, and racing claims start no more than MAX_RUNNING_JOBS_PER_OWNER."""

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from job_rows import insert, job_row
from sqlalchemy import func, select

from app.api.main import create_app
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.tables import Job
from workers.job_store import ClaimedJob, claim_next

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}
QUEUED_LIMIT = 20
RUNNING_LIMIT = 5


@pytest.fixture
def limited_api(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The API with a small queued limit, for one fresh owner, whose request rate never says 429 first."""
    from conftest import new_token

    settings = Settings(
        database_url=database_url,
        nnforge_home=tmp_path / "home",  # the filesystem broker: the jobs' messages stay in a folder
        max_queued_jobs_per_owner=QUEUED_LIMIT,
        rate_limit_per_second=10_000,
        rate_limit_burst=10_000,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(settings, f'burst-{uuid.uuid4().hex[:8]}')}"
        yield client


def test_a_burst_of_200_posts_by_one_owner_queues_exactly_the_limit(
    limited_api: TestClient, database_url: str
) -> None:
    def post(_: int) -> int:
        return limited_api.post("/v1/jobs", json=SPEC).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = Counter(pool.map(post, range(200)))

    assert codes == {202: QUEUED_LIMIT, 429: 200 - QUEUED_LIMIT}
    mine = limited_api.get("/v1/jobs", params={"status": "queued", "limit": 100}).json()["items"]
    assert len(mine) == QUEUED_LIMIT


def _race_claims(url: str, queues: list[str]) -> list[ClaimedJob | None]:
    """One claim per queue named, all started at once, each in its own thread and connection."""
    engine = make_engine(url, pool_size=len(queues))  # a connection each: none waits for the pool
    factory = make_session_factory(engine)
    barrier = threading.Barrier(len(queues))

    def claim(queue: str) -> ClaimedJob | None:
        barrier.wait()
        return claim_next(
            factory, queue=queue, token=f"t-{uuid.uuid4()}", max_running_per_owner=RUNNING_LIMIT
        )

    with ThreadPoolExecutor(max_workers=len(queues)) as pool:
        claimed = list(pool.map(claim, queues))
    engine.dispose()
    return claimed


def test_racing_claims_start_exactly_the_running_limit_of_an_owner(database_url: str) -> None:
    owner, queues = f"busy-{uuid.uuid4().hex[:8]}", [f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"]
    # 15 queued jobs in each of two queues: the limit counts the owner's running jobs in every queue
    insert(
        database_url,
        [
            job_row(
                owner, i, status="queued", queue=queues[i % 2], attempt=0, started_at=None, finished_at=None
            )
            for i in range(30)
        ],
    )

    claimed = _race_claims(database_url, [queues[i % 2] for i in range(30)])

    started = [c.id for c in claimed if c is not None]
    assert len(started) == RUNNING_LIMIT and len(set(started)) == RUNNING_LIMIT
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        statuses = Counter(session.scalars(select(Job.status).where(Job.owner == owner)))
        assert statuses == {"running": RUNNING_LIMIT, "queued": 30 - RUNNING_LIMIT}
        leases = session.scalar(
            select(func.count(func.distinct(Job.lease_owner))).where(
                Job.owner == owner, Job.status == "running"
            )
        )
        assert leases == RUNNING_LIMIT
    engine.dispose()
