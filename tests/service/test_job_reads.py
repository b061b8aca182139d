"""GET /v1/jobs/{id} answers from memory for STATUS_CACHE_SECONDS: changes made elsewhere show within that
time, a cancel through the API shows at once, and an answer is never given to another owner."""

import asyncio
import time
import uuid

import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.api.job_reads import REFRESH_AT, RecentJobReads
from app.api.main import create_app
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Job

SPEC = {"dataset": {"name": "moons"}, "model": {"arch": "mlp", "hidden_sizes": [4]}}
CACHE_SECONDS = 1.0


@pytest.fixture(scope="module")
def client(api_settings: Settings):  # type: ignore[no-untyped-def]
    settings = api_settings.model_copy(update={"status_cache_seconds": CACHE_SECONDS})
    with TestClient(create_app(settings)) as test_client:
        owner = f"reader-{uuid.uuid4().hex[:6]}"
        test_client.headers["Authorization"] = f"Bearer {new_token(settings, owner)}"
        yield test_client


def _rename_elsewhere(settings: Settings, job_id: str, name: str) -> None:
    """A change the API process does not see happen, as a worker's writes are."""
    engine = make_engine(settings.resolved_database_url)
    with transaction(make_session_factory(engine)) as session:
        session.execute(update(Job).where(Job.id == job_id).values(name=name))
    engine.dispose()


def test_a_change_made_elsewhere_shows_within_the_cache_time(
    client: TestClient, api_settings: Settings
) -> None:
    job_id = client.post("/v1/jobs", json=SPEC).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["name"] is None
    read_at = time.monotonic()
    _rename_elsewhere(api_settings, job_id, "renamed")
    while (name := client.get(f"/v1/jobs/{job_id}").json()["name"]) != "renamed":
        assert name is None
        assert time.monotonic() - read_at < CACHE_SECONDS + 0.5
        time.sleep(0.02)


def test_a_cancel_through_the_api_shows_in_the_next_read(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=SPEC).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"  # now in the cache
    client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


class Loads:
    """A loader that counts its calls and answers with its count (after `seconds`)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.calls, self.seconds = 0, seconds

    def __call__(self) -> bytes:
        self.calls += 1
        time.sleep(self.seconds)
        return str(self.calls).encode()


def test_a_kept_answer_is_only_given_to_its_owner() -> None:
    async def scenario() -> list[bytes]:
        reads, load = RecentJobReads(seconds=60), Loads()
        return [await reads.read("job", who, load) for who in ("alice", "alice", "bob")]

    assert asyncio.run(scenario()) == [b"1", b"1", b"2"]


def test_requests_that_find_no_answer_share_one_read() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        reads, load = RecentJobReads(seconds=60), Loads(seconds=0.1)
        answers = await asyncio.gather(*(reads.read("job", "alice", load) for _ in range(20)))
        return list(answers), load.calls

    answers, calls = asyncio.run(scenario())
    assert calls == 1 and set(answers) == {b"1"}


def test_late_in_its_life_an_answer_is_refreshed_in_the_background() -> None:
    async def scenario() -> tuple[bytes, bytes, int]:
        reads, load = RecentJobReads(seconds=1.0), Loads()
        await reads.read("job", "alice", load)
        await asyncio.sleep(REFRESH_AT + 0.03)  # still given, and a refresh starts
        during = await reads.read("job", "alice", load)
        await asyncio.sleep(0.05)  # the refresh has landed
        after = await reads.read("job", "alice", load)
        return during, after, load.calls

    assert asyncio.run(scenario()) == (b"1", b"2", 2)


def test_an_answer_read_before_a_cancel_is_not_kept_after_it() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        reads, load = RecentJobReads(seconds=60), Loads(seconds=0.1)
        first = asyncio.ensure_future(reads.read("job", "alice", load))  # a read starts ...
        await asyncio.sleep(0.02)
        reads.forget("job")  # ... a cancel commits meanwhile ...
        stale = await first  # ... the read ends with the old row: its caller gets it, nobody after
        return stale, await reads.read("job", "alice", load)

    assert asyncio.run(scenario()) == (b"1", b"2")


def test_answers_expire_and_zero_seconds_keeps_none() -> None:
    async def scenario(seconds: float) -> list[bytes]:
        reads, load = RecentJobReads(seconds=seconds), Loads()
        first = await reads.read("job", "alice", load)
        await asyncio.sleep(0.1)
        return [first, await reads.read("job", "alice", load)]

    assert asyncio.run(scenario(0.05)) == [b"1", b"2"]
    assert asyncio.run(scenario(0)) == [b"1", b"2"]
