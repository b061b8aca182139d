"""init_from through the API on PostgreSQL: the parent resolved (the owner's own jobs only), its checkpoint
checked against the new network before anything queues (422 naming each layer and both shapes), the
lineage read and listed, and the parent's checkpoint protected while a child exists."""

import hashlib
import io
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from stored_rows import add_checkpoints, finished_job

from app.api.lineage import lineage
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.checkpoint_retention import ONLY_THE_NEWEST, prune
from app.db.checkpoints import protected_checkpoint_ids
from app.db.deletion import delete_finished_job, expired_jobs
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Checkpoint, Job
from models.checkpoint import checkpoint_bytes
from models.specs import parse_job_spec
from models.train import EpochReport, Hook, fit

MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [8]},
    "training": {"epochs": 2, "seed": 1},
}


@pytest.fixture(scope="module")
def db(api_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(api_settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def owner(client: TestClient) -> str:
    return str(client.get("/v1/usage").json()["owner"])


class _Keep(Hook):
    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.saved.append(checkpoint)


@pytest.fixture(scope="module")
def trained() -> list[dict[str, Any]]:
    """A real run's end-of-epoch checkpoints (one per epoch), as the worker would store them."""
    spec = parse_job_spec(MOONS | {"training": MOONS["training"] | {"checkpoint": {"every_epochs": 1}}})
    hook = _Keep()
    fit(spec, hook=hook)
    return hook.saved


Checkpoints = list[dict[str, Any]]


def _parent(db: sessionmaker[Session], owner: str, checkpoints: Checkpoints) -> tuple[str, list[int]]:
    """A finished job holding these checkpoints (its best epoch the last); its id and theirs."""
    ids = []
    with transaction(db) as session:
        job_id = finished_job(session, owner, best_epoch=checkpoints[-1]["progress"]["epoch"])
        session.get_one(Job, job_id).spec = checkpoints[0]["spec"]
        for checkpoint in checkpoints:
            data = checkpoint_bytes(checkpoint)
            progress = checkpoint["progress"]
            row = Checkpoint(
                job_id=job_id,
                epoch=progress["epoch"],
                step=progress["step"],
                end_of_epoch=True,
                resumable=checkpoint["resumable"],
                metrics=checkpoint["metrics"],
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                data=data,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
    return job_id, ids


def _child(parent: str, **init: Any) -> dict[str, Any]:
    return MOONS | {"init_from": {"job": parent} | init}


def test_child_names_its_parent_and_shows_in_lists_and_lineage(
    client: TestClient, db: sessionmaker[Session], owner: str, trained: Checkpoints
) -> None:
    parent, checkpoints = _parent(db, owner, trained)
    child = client.post("/v1/jobs", json=_child(parent[:8], freeze="body", load="body"))
    assert child.status_code == 202, child.text
    body = child.json()
    assert body["parent"] == {
        "job_id": parent,
        "checkpoint_id": checkpoints[-1],
        "load": "body",
        "freeze": "body",
    }
    assert body["spec"]["init_from"]["job"] == parent  # stored with the whole id
    assert client.get(f"/v1/jobs/{body['id']}").json()["parent"]["job_id"] == parent

    listed = client.get("/v1/jobs", params={"parent": parent}).json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    down = client.get(f"/v1/jobs/{parent}/lineage").json()
    assert down["ancestors"] == [] and [d["id"] for d in down["descendants"]] == [body["id"]]
    assert down["descendants"][0]["parent"]["checkpoint_id"] == checkpoints[-1]
    up = client.get(f"/v1/jobs/{body['id']}/lineage").json()
    assert [a["id"] for a in up["ancestors"]] == [parent] and up["descendants"] == []


def test_queued_job_without_checkpoints_cannot_be_a_parent(client: TestClient) -> None:
    queued = client.post("/v1/jobs", json=MOONS).json()["id"]
    refused = client.post("/v1/jobs", json=_child(queued, checkpoint="latest"))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "init_from.checkpoint"
    assert "has no such checkpoint yet" in refused.json()["errors"][0]["reason"]


def test_mismatch_is_422_naming_each_layer_and_both_shapes(
    client: TestClient, db: sessionmaker[Session], owner: str, trained: Checkpoints
) -> None:
    parent, _ = _parent(db, owner, trained)
    wider = _child(parent) | {"model": {"arch": "mlp", "hidden_sizes": [16]}}
    before = client.get("/v1/jobs", params={"parent": parent}).json()["items"]

    refused = client.post("/v1/jobs", json=wider)

    assert refused.status_code == 422, refused.text
    errors = {e["value"]: e["reason"] for e in refused.json()["errors"] if e["field"] == "init_from"}
    assert set(errors) == {"layers.0.weight", "layers.0.bias", "layers.2.weight"}
    assert errors["layers.0.weight"].startswith("(8, 2) in the parent's checkpoint, (16, 2) in this network")
    assert client.get("/v1/jobs", params={"parent": parent}).json()["items"] == before  # nothing queued


def test_load_body_allows_a_new_label_set_that_load_all_refuses(
    client: TestClient, db: sessionmaker[Session], owner: str, trained: Checkpoints
) -> None:
    parent, _ = _parent(db, owner, trained)
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.normal(size=(60, 2)).astype(np.float32), y=np.arange(60) % 3)  # three classes
    upload = client.post("/v1/datasets", files={"file": ("three.npz", buffer.getvalue())})
    assert upload.status_code == 201, upload.text
    three = {"id": upload.json()["id"]}

    refused = client.post("/v1/jobs", json=_child(parent) | {"dataset": three})
    assert refused.status_code == 422
    assert {e["value"] for e in refused.json()["errors"]} == {"layers.2.weight", "layers.2.bias"}
    accepted = client.post("/v1/jobs", json=_child(parent, load="body") | {"dataset": three})
    assert accepted.status_code == 202, accepted.text


def test_another_owners_job_is_never_a_parent_and_reveals_nothing(
    client: TestClient, api_settings: Settings, db: sessionmaker[Session], owner: str, trained: Checkpoints
) -> None:
    parent, _ = _parent(db, owner, trained)
    other = {"Authorization": f"Bearer {new_token(api_settings, f'other-{uuid.uuid4().hex[:6]}')}"}
    theirs = client.post("/v1/jobs", json=_child(parent), headers=other)
    missing = client.post("/v1/jobs", json=_child(str(uuid.uuid4())), headers=other)
    assert theirs.status_code == missing.status_code == 422
    assert theirs.json()["errors"][0]["reason"] == missing.json()["errors"][0]["reason"]
    assert theirs.json()["errors"][0]["reason"] == "no job of yours has this id or id prefix"
    assert client.get(f"/v1/jobs/{parent}/lineage", headers=other).status_code == 404
    assert client.get("/v1/jobs", params={"parent": parent}, headers=other).json()["items"] == []


def test_the_checkpoint_a_child_started_from_is_kept_until_the_child_goes(
    client: TestClient, db: sessionmaker[Session], owner: str, trained: Checkpoints
) -> None:
    parent, (first, _) = _parent(db, owner, trained)
    child = client.post("/v1/jobs", json=_child(parent, checkpoint=first)).json()["id"]  # not newest nor best

    refused = client.delete(f"/v1/jobs/{parent}/checkpoints/{first}")
    assert refused.status_code == 409 and "jobs started from" in refused.json()["detail"]
    with transaction(db) as session:  # retention keeping only the newest would drop it, but for the child
        prune(session, parent, ONLY_THE_NEWEST)
    with db() as session:
        assert session.get(Checkpoint, first) is not None
        assert parent not in [j for j, _ in expired_jobs(session, finished_before=utcnow(), limit=10_000)]
    deleting = client.delete(f"/v1/jobs/{parent}")
    assert deleting.status_code == 409 and child in deleting.json()["detail"]

    assert client.post(f"/v1/jobs/{child}/cancel").status_code == 202
    assert client.delete(f"/v1/jobs/{child}").status_code == 204
    assert client.delete(f"/v1/jobs/{parent}/checkpoints/{first}").status_code == 204
    assert client.delete(f"/v1/jobs/{parent}").status_code == 204


def test_keep_needs_a_checkpoint_with_optimizer_state(
    client: TestClient, db: sessionmaker[Session], owner: str, trained: Checkpoints
) -> None:
    weights_only = {**trained[-1], "resumable": False, "optimizers": {}, "schedulers": {}}
    parent, _ = _parent(db, owner, [weights_only])
    refused = client.post("/v1/jobs", json=_child(parent, optimizer_state="keep", checkpoint="best"))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "init_from.optimizer_state"


def test_lineage_is_bounded_and_says_so(db: sessionmaker[Session], owner: str) -> None:
    with transaction(db) as session:
        chain = [finished_job(session, owner) for _ in range(4)]
        for parent, child in itertools.pairwise(chain):
            job = session.get_one(Job, child)
            job.parent_job_id, job.parent_checkpoint_id = parent, 1
    with db() as session:
        whole = lineage(session=session, job=session.get_one(Job, chain[1]))
        assert [a.id for a in whole.ancestors] == chain[:1] and [d.id for d in whole.descendants] == chain[2:]
        assert not whole.truncated
        cut = lineage(session=session, job=session.get_one(Job, chain[0]), limit=2)
        assert [d.id for d in cut.descendants] == chain[1:3] and cut.truncated


def test_a_parent_outlives_retention_and_deletion_while_its_child_exists(database_url: str) -> None:
    """On PostgreSQL and SQLite: the rows' own guards, beneath the API's 409s."""
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        parent = finished_job(session, "lineage-owner", finished_days_ago=30)
        first, _newest = add_checkpoints(session, parent, epochs=2, nbytes=100)
        child = finished_job(session, "lineage-owner", finished_days_ago=30)
        row = session.get_one(Job, child)
        row.parent_job_id, row.parent_checkpoint_id = parent, first
    with transaction(factory) as session:
        prune(session, parent, ONLY_THE_NEWEST)
        assert first in protected_checkpoint_ids(session, session.get_one(Job, parent))
        expired = [job_id for job_id, _ in expired_jobs(session, finished_before=utcnow(), limit=10_000)]
        assert child in expired and parent not in expired
    with factory() as session:  # refused: its caller rolls back what went before the job's row
        assert not delete_finished_job(session, job_id=parent, owner="lineage-owner")
    with transaction(factory) as session:
        assert session.get(Checkpoint, first) is not None and session.get(Job, parent) is not None
        assert delete_finished_job(session, job_id=child, owner="lineage-owner")
    with transaction(factory) as session:
        assert delete_finished_job(session, job_id=parent, owner="lineage-owner")
    engine.dispose()
