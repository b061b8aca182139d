"""Idempotency-Key: one job per key however often or however concurrently the request is sent."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.api.main import create_app
from app.core.settings import Settings
from app.db.tables import Job

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


def _jobs_named(client: TestClient, name: str) -> int:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return session.scalar(select(func.count()).select_from(Job).where(Job.name == name)) or 0


def test_a_replay_returns_the_first_response_and_creates_nothing(client: TestClient) -> None:
    key, name = str(uuid.uuid4()), f"idem-{uuid.uuid4().hex[:6]}"
    first = client.post("/v1/jobs", json={**SPEC, "name": name}, headers={"Idempotency-Key": key})
    second = client.post("/v1/jobs", json={**SPEC, "name": name}, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert first.headers["location"] == second.headers["location"]
    assert _jobs_named(client, name) == 1


def test_the_same_key_with_another_body_is_422(client: TestClient) -> None:
    key = str(uuid.uuid4())
    assert client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": key}).status_code == 202
    other = client.post("/v1/jobs", json={**SPEC, "name": "other"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"


def test_keys_are_scoped_by_owner(api_settings: Settings, client: TestClient) -> None:
    key, name = str(uuid.uuid4()), f"scoped-{uuid.uuid4().hex[:6]}"
    with TestClient(create_app(api_settings)) as other:
        other.headers["Authorization"] = f"Bearer {new_token(api_settings, 'someone-else')}"
        a = client.post("/v1/jobs", json={**SPEC, "name": name}, headers={"Idempotency-Key": key})
        b = other.post("/v1/jobs", json={**SPEC, "name": name}, headers={"Idempotency-Key": key})
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_fifty_concurrent_posts_with_one_key_make_exactly_one_job(client: TestClient) -> None:
    key, name = str(uuid.uuid4()), f"race-{uuid.uuid4().hex[:6]}"

    def post(_: int) -> int:
        return client.post(
            "/v1/jobs", json={**SPEC, "name": name}, headers={"Idempotency-Key": key}
        ).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(post, range(50)))
    assert _jobs_named(client, name) == 1
    assert set(codes) <= {202, 409} and 202 in codes  # 409: the first was still in flight


@pytest.mark.parametrize(
    ("refused", "field"),
    [
        ({**SPEC, "training": {"epochs": 0}}, "training.epochs"),  # refused by the schema, before the key
        ({**SPEC, "dataset": {"id": "no-such-dataset"}}, "dataset.id"),  # refused after the key was reserved
    ],
)
def test_a_failed_first_request_frees_its_key(client: TestClient, refused: dict, field: str) -> None:
    key, name = str(uuid.uuid4()), f"retry-{uuid.uuid4().hex[:6]}"
    bad = client.post("/v1/jobs", json=refused, headers={"Idempotency-Key": key})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == field
    # A stored 422 or a key left reserved would answer 422 ("a different request body") or 409 (in flight).
    good = client.post("/v1/jobs", json={**SPEC, "name": name}, headers={"Idempotency-Key": key})
    assert good.status_code == 202, good.text
    assert _jobs_named(client, name) == 1
    again = client.post("/v1/jobs", json={**SPEC, "name": name}, headers={"Idempotency-Key": key})
    assert (again.status_code, again.json()) == (202, good.json())  # the key now holds the job
