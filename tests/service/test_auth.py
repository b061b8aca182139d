"""Access: bearer tokens, owner scoping (another owner's objects are 404 like missing ones), rate limits."""

import io
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from stored_rows import add_checkpoints
from support import ROOT

from app.api import deps
from app.api.main import create_app
from app.core.rate_limit import RateLimiter
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


@pytest.fixture(scope="module")
def app_settings(api_settings: Settings) -> Settings:
    return api_settings


@pytest.fixture(scope="module")
def alice(app_settings: Settings):  # type: ignore[no-untyped-def]
    with TestClient(create_app(app_settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(app_settings, 'alice')}"
        yield client


@pytest.fixture(scope="module")
def bob(app_settings: Settings):  # type: ignore[no-untyped-def]
    with TestClient(create_app(app_settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(app_settings, 'bob')}"
        yield client


def _alices_objects(alice: TestClient) -> tuple[str, str]:
    job_id = alice.post("/v1/jobs", json=SPEC).json()["id"]
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((10, 2), np.float32), y=np.arange(10) % 2)
    dataset_id = alice.post("/v1/datasets", files={"file": ("a.npz", buffer.getvalue())}).json()["id"]
    return job_id, dataset_id


def _a_checkpoint_of(settings: Settings, job_id: str) -> int:
    engine = make_engine(settings.resolved_database_url)
    with transaction(make_session_factory(engine)) as session:
        (checkpoint_id,) = add_checkpoints(session, job_id, epochs=1, nbytes=10)
    engine.dispose()
    return checkpoint_id


def test_every_route_hides_another_owners_objects_as_404(
    alice: TestClient, bob: TestClient, app_settings: Settings
) -> None:
    job_id, dataset_id = _alices_objects(alice)
    checkpoint_id = _a_checkpoint_of(app_settings, job_id)
    foreign = [
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("PATCH", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/metrics"),
        ("GET", f"/v1/jobs/{job_id}/checkpoints"),
        ("GET", f"/v1/jobs/{job_id}/checkpoints/latest"),
        ("GET", f"/v1/jobs/{job_id}/checkpoints/best"),
        ("GET", f"/v1/jobs/{job_id}/logs"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("GET", f"/v1/jobs/{job_id}/evaluations"),
        ("POST", f"/v1/jobs/{job_id}/predict"),
        ("GET", f"/v1/datasets/{dataset_id}"),
    ]
    for method, path in foreign:
        body = {"notes": "written by bob"} if method == "PATCH" else None
        body = {"inputs": [[0.0, 0.0]]} if path.endswith("/predict") else body  # valid: 404 comes first
        mine = alice.request(method, path, json=body and {"notes": "alice's"})
        theirs = bob.request(method, path, json=body)
        missing = bob.request(method, path.replace(job_id, "0" * 36).replace(dataset_id, "0" * 36), json=body)
        assert mine.status_code != 404 or path.endswith(("latest", "best")), (path, mine.status_code)
        assert theirs.status_code == 404, (path, theirs.status_code)
        assert (theirs.status_code, theirs.json()["title"]) == (missing.status_code, missing.json()["title"])
    assert job_id not in {j["id"] for j in bob.get("/v1/jobs").json()["items"]}
    assert bob.get("/v1/jobs", params={"id_prefix": job_id[:8]}).json()["items"] == []
    assert alice.get(f"/v1/jobs/{job_id}").json()["notes"] == "alice's"  # bob's PATCH changed nothing
    assert dataset_id not in {d["id"] for d in bob.get("/v1/datasets").json()["items"]}
    assert bob.get("/v1/usage").json()["checkpoints"]["count"] == 0  # alice's checkpoint is hers alone
    refused = bob.post("/v1/jobs", json={**SPEC, "dataset": {"id": dataset_id}})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "dataset.id"
    # DELETEs last, bob's before alice's: hers then go through (204) or are refused (409: the checkpoint is
    # her job's newest), never 404
    for path in (
        f"/v1/jobs/{job_id}/checkpoints/{checkpoint_id}",
        f"/v1/datasets/{dataset_id}",
        f"/v1/jobs/{job_id}",
    ):
        theirs = bob.delete(path)
        missing = bob.delete(path.replace(job_id, "0" * 36).replace(dataset_id, "0" * 36))
        assert theirs.status_code == 404, (path, theirs.status_code)
        assert (theirs.status_code, theirs.json()["title"]) == (missing.status_code, missing.json()["title"])
        assert alice.delete(path).status_code in (204, 409), path
    assert alice.get(f"/v1/jobs/{job_id}").status_code == 404  # cancelled above, then deleted


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer nnf_not-a-token", "Bearer x"])
def test_missing_malformed_and_unknown_tokens_get_401(app_settings: Settings, header: str | None) -> None:
    with TestClient(create_app(app_settings)) as client:
        headers = {"Authorization": header} if header else {}
        for path in ("/v1/jobs", "/v1/catalog", "/v1/datasets"):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("cache_seconds", [0.0, 1.0])
def test_revoked_token_gets_401_within_the_token_cache_time(
    app_settings: Settings, cache_seconds: float
) -> None:
    settings = app_settings.model_copy(update={"token_cache_seconds": cache_seconds})
    env = {
        "DATABASE_URL": settings.database_url or "",
        "NNFORGE_HOME": str(settings.nnforge_home),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
    }
    created = subprocess.run(
        [sys.executable, "-m", "app.client.cli", "token", "create", "--owner", "carol"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    secret = created.stdout.strip()
    token_id = created.stderr.split()[1]
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        last_accepted = time.monotonic()
        assert client.get("/v1/jobs", headers=headers).status_code == 200
        subprocess.run(
            [sys.executable, "-m", "app.client.cli", "token", "revoke", token_id],
            env=env,
            check=True,
            capture_output=True,
        )
        while (status := client.get("/v1/jobs", headers=headers).status_code) == 200:
            # the API's answer from before the revocation may stand for at most TOKEN_CACHE_SECONDS
            assert time.monotonic() - last_accepted < cache_seconds + 0.5
            time.sleep(0.05)
        assert status == 401


def test_request_rate_over_the_limit_gets_429_with_retry_after(app_settings: Settings) -> None:
    limited = app_settings.model_copy(update={"rate_limit_per_second": 1.0, "rate_limit_burst": 3})
    with TestClient(create_app(limited)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(limited, 'dave')}"
        codes = [client.get("/v1/jobs").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
        response = client.get("/v1/jobs")
        assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1


def test_serve_refuses_to_listen_beyond_loopback_with_auth_off(app_settings: Settings) -> None:
    from app.client.serve import prepare

    with pytest.raises(SystemExit, match="AUTH off"):
        prepare(app_settings.model_copy(update={"auth": False, "host": "0.0.0.0"}))


def test_bad_tokens_from_one_address_get_429_and_stop_reaching_the_database(
    app_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past UNAUTHENTICATED_RATE_LIMIT_BURST 401s an address gets 429 with Retry-After, and its unknown
    tokens are no longer looked up; a token the process knows, and other addresses, are unaffected. IPv6
    addresses count per /64."""
    limited = app_settings.model_copy(
        update={"unauthenticated_rate_limit_per_second": 0.5, "unauthenticated_rate_limit_burst": 5}
    )
    lookups: list[str] = []
    real_owner_of = deps.owner_of

    def counted_owner_of(*, session: Session, secret: str) -> str | None:
        lookups.append(secret)
        return real_owner_of(session=session, secret=secret)

    monkeypatch.setattr(deps, "owner_of", counted_owner_of)
    app = create_app(limited)
    good = {"Authorization": f"Bearer {new_token(limited, 'erin')}"}
    with (
        TestClient(app, client=("203.0.113.7", 1000)) as flood,
        TestClient(app, client=("198.51.100.9", 1000)) as neighbour,
    ):
        assert flood.get("/v1/jobs", headers=good).status_code == 200
        lookups.clear()
        responses = [flood.get("/v1/jobs", headers={"Authorization": f"Bearer nnf_x{i}"}) for i in range(20)]
        codes = [r.status_code for r in responses]
        assert codes[:5] == [401] * 5 and codes.count(401) <= 6, codes
        assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
        assert len(lookups) <= 6  # the 429s read no database
        assert flood.get("/v1/jobs").status_code == 429  # no token at all: the same bucket
        assert flood.get("/v1/jobs", headers=good).status_code == 200
        assert neighbour.get("/v1/jobs", headers={"Authorization": "Bearer nnf_y"}).status_code == 401
    with (
        TestClient(app, client=("2001:db8:0:1::1", 1000)) as first,
        TestClient(app, client=("2001:db8:0:1::2", 1000)) as same_64,
    ):
        assert [first.get("/v1/jobs").status_code for _ in range(5)] == [401] * 5
        assert same_64.get("/v1/jobs").status_code == 429


def test_the_rate_limiter_forgets_full_buckets_and_stays_bounded() -> None:
    limiter = RateLimiter(1.0, 2, max_keys=10)
    for i in range(1000):  # an address sprayed per request: each takes one token and never returns
        assert limiter.retry_after(f"10.0.{i // 256}.{i % 256}") == 0
    assert len(limiter._buckets) <= 10
    assert limiter.waiting("never-seen") == 0 and "never-seen" not in limiter._buckets
