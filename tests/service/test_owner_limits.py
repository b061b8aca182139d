"""Per-owner limits hold exactly under concurrency, on PostgreSQL and on SQLite: a burst of POSTs queues no
more than MAX_QUEUED_JOBS_PER_OWNER."""

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.core.settings import Settings

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}
QUEUED_LIMIT = 20


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
