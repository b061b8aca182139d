"""POST /v1/jobs/{id}/predict on real PostgreSQL, with each checkpoint exported by the real child process
and served by ONNX Runtime: the answers equal `load_model`'s, the request is checked against the model,
the limits hold. The checkpoints come from `fit` in this process (a few seconds for all), stored as a
worker stores them; the live service's path (worker, CLI, browser) is tests/service/test_predict_live.py."""

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pytest
import schemathesis
import torch
from conftest import new_token, redis_database
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from stored_rows import finished_job

from app.api.main import create_app
from app.api.onnx_models import prune
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Checkpoint
from models.checkpoint import checkpoint_bytes, load_model
from models.specs import JobSpec
from models.train import fit

MAX_BATCH = 8
OWNER = f"predictor-{uuid.uuid4().hex[:6]}"
ONE_EPOCH = {"epochs": 1, "seed": 0, "batch_size": 64}
SPECS: dict[str, dict[str, Any]] = {
    "mlp": {"dataset": {"name": "digits"}, "model": {"arch": "mlp", "hidden_sizes": [32]}},
    "cnn": {
        "dataset": {"name": "digits"},
        "model": {"arch": "cnn", "conv_blocks": [{"channels": 4}], "hidden_sizes": [16]},
    },
    "rnn": {"dataset": {"name": "digits"}, "model": {"arch": "rnn", "cell": "rnn", "hidden_size": 16}},
    # An MLP (its export takes a fraction of an RNN's 50 unrolled steps): outputs (50,) per sample, answered
    # in the target's shape (50, 1).
    "sine": {"dataset": {"name": "sine"}, "model": {"arch": "mlp", "hidden_sizes": [16]}},
    "gan": {
        "dataset": {"name": "gaussian-ring"},
        "model": {
            "arch": "gan",
            "latent_dim": 4,
            "generator": {"hidden_sizes": [8]},
            "discriminator": {"hidden_sizes": [8]},
        },
    },
}
DIGITS = load_digits().data[:6].astype(np.float32)  # raw pixel values, 0..16


@dataclass(frozen=True)
class Trained:
    job_id: str
    checkpoint_id: int
    model: torch.nn.Module  # load_model of the stored checkpoint


@pytest.fixture(scope="module")
def settings(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=postgres_url,
        redis_url=redis_database(12),
        nnforge_home=tmp_path_factory.mktemp("predict-home"),
        max_predict_batch=MAX_BATCH,
        predict_session_cache=2,
        rate_limit_per_second=1000,
    )


def _store(settings: Settings, owner: str, checkpoint: dict[str, Any] | None) -> tuple[str, int]:
    """A finished job as a worker leaves it, with `checkpoint` as its best epoch's (none: no checkpoint)."""
    engine = make_engine(settings.resolved_database_url)
    with transaction(make_session_factory(engine)) as session:
        job_id = finished_job(session, owner, best_epoch=1 if checkpoint else None)
        row_id = 0
        if checkpoint is not None:
            data = checkpoint_bytes(checkpoint)
            row = Checkpoint(
                job_id=job_id,
                epoch=1,
                step=1,
                end_of_epoch=True,
                metrics={},
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                data=data,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            row_id = row.id
    engine.dispose()
    return job_id, row_id


@pytest.fixture(scope="module")
def trained(settings: Settings) -> dict[str, Trained]:
    out = {}
    for name, spec in SPECS.items():
        checkpoint = fit(JobSpec.model_validate(spec | {"training": ONE_EPOCH})).checkpoint
        job_id, checkpoint_id = _store(settings, OWNER, checkpoint)
        out[name] = Trained(job_id, checkpoint_id, load_model(checkpoint))
    return out


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {new_token(settings, OWNER)}"
        yield client


def _predict(api: TestClient, job_id: str, **body: Any) -> Any:
    response = api.post(f"/v1/jobs/{job_id}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("arch", "flat"), [("mlp", True), ("cnn", False), ("rnn", False)])
def test_predict_classifier_equals_load_model(
    api: TestClient, trained: dict[str, Trained], arch: str, flat: bool
) -> None:
    job = trained[arch]
    inputs = DIGITS if flat else DIGITS.reshape(-1, 8, 8)  # a sample may come flat or in its shape
    answer = _predict(api, job.job_id, inputs=inputs.tolist())
    with torch.no_grad():
        expected = torch.softmax(job.model(torch.from_numpy(DIGITS.reshape(-1, 8, 8))), dim=1).numpy()
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5, rtol=0)
    assert answer["classes"] == expected.argmax(axis=1).tolist()
    assert answer["labels"] == list(range(10))
    assert answer["checkpoint_id"] == job.checkpoint_id


def test_predict_regression_equals_load_model(api: TestClient, trained: dict[str, Trained]) -> None:
    t = np.linspace(0, 3, 50, dtype=np.float32)
    waves = np.stack([np.sin(t), 2 * np.sin(3 * t + 1)])[..., None]  # (2, 50, 1)
    answer = _predict(api, trained["sine"].job_id, inputs=waves.tolist(), checkpoint="latest")
    with torch.no_grad():
        expected = trained["sine"].model(torch.from_numpy(waves)).numpy()
    assert np.asarray(answer["outputs"]).shape == (2, 50, 1)
    np.testing.assert_allclose(answer["outputs"], expected.reshape(2, 50, 1), atol=1e-5, rtol=0)


def test_predict_gan_samples_follow_the_seed(api: TestClient, trained: dict[str, Trained]) -> None:
    job = trained["gan"]
    first = _predict(api, job.job_id, n=5, seed=7)["samples"]
    assert _predict(api, job.job_id, n=5, seed=7)["samples"] == first
    assert _predict(api, job.job_id, n=5, seed=8)["samples"] != first
    latent = np.random.default_rng(7).standard_normal((5, 4), dtype=np.float32)  # as the API documents
    with torch.no_grad():
        expected = job.model(torch.from_numpy(latent)).numpy()
    np.testing.assert_allclose(first, expected, atol=1e-5, rtol=0)
    assert len(_predict(api, job.job_id)["samples"]) == 16  # n by default


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"inputs": [[1.0, 2.0, 3.0]]}, "inputs", "[8, 8] (or 64 numbers flat)"),
        ({"inputs": [[0.0] * 64, [0.0] * 63]}, "inputs", "[8, 8]"),
        ({"inputs": [["a"] * 64]}, "inputs", "must be numbers"),
        ({"inputs": []}, "inputs", "required"),
        ({}, "inputs", "required"),
        ({"inputs": [[1e39] * 64]}, "inputs", "finite"),
        ({"inputs": [[0.0] * 64], "n": 3}, "n", "only a GAN"),
        ({"inputs": [[0.0] * 64] * (MAX_BATCH + 1)}, "inputs", f"at most {MAX_BATCH} per request"),
        ({"inputs": [[0.0] * 64], "seed": -1}, "seed", ""),
        ({"inputs": [[0.0] * 64], "extra": 1}, "extra", ""),
    ],
)
def test_predict_refuses_bad_inputs_naming_the_field(
    api: TestClient, trained: dict[str, Trained], body: dict[str, Any], field: str, says: str
) -> None:
    response = api.post(f"/v1/jobs/{trained['mlp'].job_id}/predict", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == field and says in error["reason"], error


def test_predict_gan_refuses_inputs_and_too_many_samples(
    api: TestClient, trained: dict[str, Trained]
) -> None:
    url = f"/v1/jobs/{trained['gan'].job_id}/predict"
    response = api.post(url, json={"n": MAX_BATCH + 1})
    assert response.status_code == 422
    assert "MAX_PREDICT_BATCH" in response.json()["errors"][0]["reason"]
    assert api.post(url, json={"inputs": [[0.0, 0.0]]}).json()["errors"][0]["field"] == "inputs"


def test_predict_body_over_the_json_limit_is_413(api: TestClient, trained: dict[str, Trained]) -> None:
    body = b'{"inputs": [[' + b"0.000000," * 130_000 + b"0]]}"  # over 1 MiB
    response = api.post(f"/v1/jobs/{trained['mlp'].job_id}/predict", content=body)
    assert response.status_code == 413 and "1,048,576 bytes" in response.json()["detail"]


def test_predict_is_owner_scoped_and_needs_a_checkpoint(
    api: TestClient, settings: Settings, trained: dict[str, Trained]
) -> None:
    mlp = trained["mlp"].job_id
    other = {"Authorization": f"Bearer {new_token(settings, 'someone-else')}"}
    body = {"inputs": DIGITS[:1].tolist()}
    assert api.post(f"/v1/jobs/{mlp}/predict", json=body, headers=other).status_code == 404
    assert api.post(f"/v1/jobs/{uuid.uuid4()}/predict", json=body).status_code == 404
    gan_checkpoint = str(trained["gan"].checkpoint_id)  # another job's checkpoint is not this job's
    assert api.post(f"/v1/jobs/{mlp}/predict", json=body | {"checkpoint": gan_checkpoint}).status_code == 404
    empty, _ = _store(settings, OWNER, None)
    response = api.post(f"/v1/jobs/{empty}/predict", json=body)
    assert response.status_code == 409 and "no checkpoint yet" in response.json()["detail"]


def test_predict_and_download_of_a_checkpoint_named_by_non_ascii_digits_are_404(
    api: TestClient, trained: dict[str, Trained]
) -> None:
    # "²" and "３" pass str.isdigit, and int() refuses the first: a 500 before, on a route the fuzzer reaches.
    mlp = trained["mlp"].job_id
    for which in ("²", "３"):
        body = {"inputs": DIGITS[:1].tolist(), "checkpoint": which}
        response = api.post(f"/v1/jobs/{mlp}/predict", json=body)
        assert response.status_code == 404 and which in response.json()["detail"], response.text
        assert api.get(f"/v1/jobs/{mlp}/checkpoints/{which}").status_code == 404


def _any_request(arch: str) -> dict[str, Any]:
    if arch == "gan":
        return {"n": 1}
    return {"inputs": np.zeros((1, 50, 1)).tolist() if arch == "sine" else DIGITS[:1].tolist()}


def test_predict_keeps_sessions_of_the_most_recent_checkpoints_and_every_export_on_disk(
    api: TestClient, settings: Settings, trained: dict[str, Trained]
) -> None:
    for arch in SPECS:
        _predict(api, trained[arch].job_id, **_any_request(arch))
    models = api.app.state.onnx_models  # type: ignore[attr-defined]
    assert len(models.sessions) == settings.predict_session_cache == 2
    files = {p: p.stat().st_ino for p in (settings.nnforge_home / "onnx").glob("*.onnx")}
    assert len(files) == len(SPECS)
    # The first checkpoint's session was dropped: it is served again from its file, not exported again.
    _predict(api, trained["mlp"].job_id, **_any_request("mlp"))
    assert {p: p.stat().st_ino for p in files} == files
    assert len(models.sessions) == 2


def test_predict_export_past_its_timeout_is_503_naming_the_limit(
    settings: Settings, trained: dict[str, Trained], tmp_path: Path
) -> None:
    # Long enough for the child to start, far too short for an export (which imports onnxscript). The memory
    # bound (PREDICT_EXPORT_MEMORY_BYTES) is the same RLIMIT_AS the dry run has (test_job_bounds.py).
    bounded = settings.model_copy(update={"nnforge_home": tmp_path, "predict_export_timeout_seconds": 1.0})
    with TestClient(create_app(bounded)) as client:
        response = client.post(
            f"/v1/jobs/{trained['mlp'].job_id}/predict",
            json={"inputs": DIGITS[:1].tolist()},
            headers={"Authorization": f"Bearer {new_token(settings, OWNER)}"},
        )
    assert response.status_code == 503
    assert "PREDICT_EXPORT_TIMEOUT_SECONDS (1 s)" in response.json()["detail"]
    assert list(tmp_path.glob("onnx/*")) == []  # the stopped export left no file


def test_prune_drops_the_least_recently_used_files_over_the_limit(tmp_path: Path) -> None:
    now = time.time()
    for age, name in enumerate(["newest", "kept", "old", "oldest"]):
        path = tmp_path / f"{name}.v1.onnx"
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - age * 60, now - age * 60))
    stale = tmp_path / "crashed.v1.onnx.123.partial"
    stale.write_bytes(b"x")
    os.utime(stale, (now - 3600, now - 3600))
    prune(tmp_path, 250, keep=tmp_path / "newest.v1.onnx", stale_seconds=600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.v1.onnx", "newest.v1.onnx"]
    prune(tmp_path, 0, keep=tmp_path / "newest.v1.onnx", stale_seconds=600)
    assert [p.name for p in tmp_path.iterdir()] == ["newest.v1.onnx"]  # the one just written stays


def test_predict_answers_as_its_schema_says_for_generated_bodies(
    settings: Settings, trained: dict[str, Trained]
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    headers = {"Authorization": f"Bearer {new_token(settings, OWNER)}"}

    @hypothesis.given(case=schema["/v1/jobs/{job_id}/predict"]["POST"].as_strategy())
    @hypothesis.settings(max_examples=20, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
    def answers_as_documented(case: Any) -> None:
        case.path_parameters = {"job_id": trained["mlp"].job_id}  # a real model, not only 404s
        case.call_and_validate(headers=headers)

    answers_as_documented()
