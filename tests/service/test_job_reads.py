"""GET /v1/jobs/{id} answers from memory for STATUS_CACHE_SECONDS: changes made elsewhere show within that
time, a cancel through the API shows at once, and an answer is never given to another owner."""

import time
import uuid

import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Job
from app.job_reads import RecentJobReads
from app.main import create_app
from app.settings import Settings

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


def test_a_cached_answer_is_only_given_to_its_owner() -> None:
    reads = RecentJobReads(seconds=60)
    reads.put("job", "alice", b"{}", reads.generation("job"))
    assert reads.get("job", "alice") == b"{}"
    assert reads.get("job", "bob") is None


def test_an_answer_read_before_a_cancel_is_not_stored_after_it() -> None:
    reads = RecentJobReads(seconds=60)
    generation = reads.generation("job")  # a read starts ...
    reads.forget("job")  # ... a cancel commits meanwhile ...
    reads.put("job", "alice", b'{"status": "queued"}', generation)  # ... the read ends with the old row
    assert reads.get("job", "alice") is None


def test_answers_expire_and_zero_seconds_keeps_none() -> None:
    reads = RecentJobReads(seconds=0.05)
    reads.put("job", "alice", b"{}", reads.generation("job"))
    time.sleep(0.1)
    assert reads.get("job", "alice") is None
    never = RecentJobReads(seconds=0)
    never.put("job", "alice", b"{}", never.generation("job"))
    assert never.get("job", "alice") is None
