"""The sweep driver's passes without a worker, on PostgreSQL and SQLite: drivers racing queue each trial once,
a trial asked by a pass that died is queued with the parameters it already held, ended trials are told to
Optuna; and POST /v1/sweeps refuses a space that can produce an invalid spec or one over a cost limit, naming
the path."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api.main import create_app
from app.api.sweeps import cost_limits, create_sweep
from app.core.settings import Settings
from app.db import job_state
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.migrate import upgrade_to_head
from app.db.tables import Job
from models.sweep_space import SweepSpec
from workers import sweep_study
from workers.sweep_driver import Limits, drive

LIMITS = Limits(max_restarts=3, max_queued_per_owner=100, cost=cost_limits(Settings()))
NAS: dict[str, Any] = {
    "name": "nas",
    "base": {"dataset": {"name": "digits"}, "model": {"arch": "mlp"}, "training": {"epochs": 1}},
    "space": {
        "model": {
            "choices": [
                {"arch": "mlp", "hidden_sizes": [32]},
                {"arch": "cnn", "conv_blocks": [{"channels": 4}], "hidden_sizes": [16]},
            ]
        },
        "model.conv_blocks": {"choices": [[{"channels": 4}], [{"channels": 4}, {"channels": 8}]]},
        "optimizer.lr": {"low": 0.001, "high": 0.1, "log": True},
    },
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "sampler": "random",
    "seed": 3,
}


@pytest.fixture(scope="module")
def own_postgresql() -> Iterator[str]:
    """A database no worker knows: nothing but these tests drives or trains its sweeps."""
    from conftest import own_postgres_database

    with own_postgres_database("nnforge_sweep_driver") as url:
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("own_postgresql"))
    url = f"sqlite:///{tmp_path / 'nnforge.db'}"
    upgrade_to_head(url)
    return url


def _new_sweep(url: str, **changes: Any) -> str:
    factory = make_session_factory(make_engine(url))
    with transaction(factory) as session:
        sweep_in = SweepSpec.model_validate(NAS | changes)
        return create_sweep(session=session, sweep_in=sweep_in, owner="o", settings=Settings()).id


def _trials(url: str, sweep_id: str) -> list[Job]:
    with make_session_factory(make_engine(url))() as session:
        return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial_number)))


def _study(url: str, sweep_id: str) -> optuna.Study:
    return optuna.load_study(
        study_name=sweep_study.study_name(sweep_id), storage=sweep_study.storage_for(url)
    )


def test_racing_drivers_queue_each_trial_once(database: str) -> None:
    sweep_id = _new_sweep(database, trials=6, parallel=6)
    barrier, queued = threading.Barrier(4), []

    def race() -> None:
        factory = make_session_factory(make_engine(database))  # each driver its own connections
        barrier.wait()
        queued.append(len(drive(factory, sweep_id=sweep_id, database_url=database, limits=LIMITS)))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs = _trials(database, sweep_id)
    assert [job.trial_number for job in jobs] == list(range(6))
    assert sorted(queued) == [0, 0, 0, 6]  # one pass queued them all; the others found no room
    assert len(_study(database, sweep_id).trials) == 6  # nothing asked that was not queued
    for job in jobs:  # the conditional path was set exactly for the CNN choice
        cnn = job.trial_params["model"]["arch"] == "cnn"
        assert ("model.conv_blocks" in job.trial_params) == cnn
        assert job.arch == job.trial_params["model"]["arch"]
        if cnn:
            channels = [block["channels"] for block in job.spec["model"]["conv_blocks"]]
            assert channels == [block["channels"] for block in job.trial_params["model.conv_blocks"]]


def test_trial_asked_by_a_dead_pass_is_queued_with_its_parameters(database: str) -> None:
    sweep_id = _new_sweep(database, trials=3, parallel=1)
    factory = make_session_factory(make_engine(database))
    [first] = drive(factory, sweep_id=sweep_id, database_url=database, limits=LIMITS)
    # A pass that asked for trial 1 and chose its learning rate, then died before its job committed.
    study = _study(database, sweep_id)
    lost = study.ask()
    lr = lost.suggest_float("optimizer.lr", 0.001, 0.1, log=True)
    with transaction(factory) as session:  # trial 0 ends (cancelled), which makes room for the next
        assert job_state.cancel_queued(session, job_id=first.id, version=0)
    [resumed] = drive(factory, sweep_id=sweep_id, database_url=database, limits=LIMITS)
    assert resumed.trial_number == lost.number == 1
    assert resumed.trial_params["optimizer.lr"] == lr
    assert resumed.spec["optimizer"]["lr"] == lr
    states = [t.state for t in _study(database, sweep_id).trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING]  # cancelled: told


@pytest.mark.parametrize(
    ("space", "field"),
    [
        ({"model.nope": {"choices": [1, 2]}}, "space.model.nope"),
        ({"optimizer.lr": {"low": 0.001, "high": 30.0}}, "space.optimizer.lr"),
        ({"model.hidden_sizes": {"choices": [[64], [0]]}}, "space.model.hidden_sizes"),
        ({"training.batch_size": {"low": 1, "high": 10_000}}, "space.training.batch_size"),
        ({"model.kernel_size": {"choices": [3]}, "model": NAS["space"]["model"]}, "space.model.kernel_size"),
        ({"optimizer.lr": {"low": 0.1, "high": 0.01}}, "space.optimizer.lr"),
    ],
)
def test_space_that_can_produce_an_invalid_spec_is_refused_naming_the_path(
    client: TestClient, space: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/sweeps", json=NAS | {"space": space})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize(
    ("base_hidden", "space", "field"),
    [  # one step of a [4000, 4000] MLP at batch 64 is an estimated 6.2e9 FLOPs, over the 1e9 set here
        ([32], {"model.hidden_sizes": {"choices": [[32], [4000, 4000]]}}, "space.model.hidden_sizes"),
        ([4000, 4000], {"optimizer.lr": {"low": 0.001, "high": 0.1}}, "base.training.batch_size"),
    ],
)
def test_corner_over_a_cost_limit_is_refused_naming_the_path(
    api_settings: Settings, base_hidden: list[int], space: dict[str, Any], field: str
) -> None:
    from conftest import new_token

    settings = api_settings.model_copy(update={"max_step_flops": 1e9})
    base = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": base_hidden},
        "training": {"epochs": 1, "batch_size": 64},
    }
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(settings, 'sweep-cost')}"
        response = client.post("/v1/sweeps", json=NAS | {"base": base, "space": space})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]  # the estimate is checked before (and instead of) the dry run
    assert error["field"] == field and "MAX_STEP_FLOPS" in error["reason"], error


def test_bad_base_is_refused_naming_its_field(client: TestClient) -> None:
    base = {"dataset": {"name": "digits"}, "model": {"arch": "mlp"}, "training": {"epochs": 0}}
    response = client.post("/v1/sweeps", json=NAS | {"base": base})
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["base.training.epochs"]
    missing = client.post("/v1/sweeps", json=NAS | {"base": {"model": {"arch": "mlp"}}})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "base.dataset"
    too_many = client.post("/v1/sweeps", json=NAS | {"trials": 201, "parallel": 17})
    assert {e["field"] for e in too_many.json()["errors"]} == {"trials", "parallel"}
