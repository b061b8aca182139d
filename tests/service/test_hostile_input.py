"""Hostile requests get their 4xx before anything large is read or allocated."""

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from support import service_env

from app.core.settings import Settings
from models import limits

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


def test_a_declared_body_over_the_cap_is_413_unread(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"{}", headers={"content-type": "application/json", "content-length": str(10**9)}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_a_streamed_body_past_the_cap_is_cut_off_with_413(client: TestClient) -> None:
    def chunks():  # no Content-Length: the server must count
        for _ in range(40):
            yield b" " * 65536

    response = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_an_upload_over_the_cap_is_413(client: TestClient) -> None:
    big = b"a\n" + b"1\n" * (limits.MAX_UPLOAD_BYTES // 2 + 40_000)
    response = client.post("/v1/datasets", files={"file": ("big.csv", big)})
    assert response.status_code == 413


def _npy_header(shape: tuple[int, ...]) -> bytes:
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def test_hostile_uploads_get_422_without_a_large_allocation(api_settings: Settings, tmp_path: Path) -> None:
    lying = io.BytesIO()
    with zipfile.ZipFile(lying, "w") as archive:
        archive.writestr("x.npy", _npy_header((10**9, 10**3)) + b"\0" * 64)
    pickled = io.BytesIO()
    np.savez(pickled, x=np.array([{"a": 1}, None], dtype=object))
    cases = {
        "huge-shape.npz": lying.getvalue(),
        "pickle.npz": pickled.getvalue(),
        "not-a-zip.npz": b"PK\x03\x04garbage",
        "ragged.csv": b"a,b\n1,2\n3\n",
        "binary.csv": b"\xff\xfe\x00",
    }
    folder = tmp_path / "uploads"
    folder.mkdir()
    for name, data in cases.items():
        (folder / name).write_bytes(data)
    env = service_env(api_settings) | {"NNFORGE_TEST_TOKEN": new_token(api_settings, "hostile-uploader")}
    run = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("upload_memory.py")), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout.splitlines()[-1])
    assert measured.keys() == cases.keys()
    for name, figures in measured.items():
        assert figures["status"] == 422, (name, figures)
        # a 10⁹×10³ float32 array would be 4 TB; each of these 422s costs 0.01-0.2 MiB
        assert figures["resident_mib"] < 4 and figures["allocated_mib"] < 4, (name, figures)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("training.epochs", limits.MAX_EPOCHS + 1),
        ("training.batch_size", limits.MAX_BATCH_SIZE + 1),
        ("optimizer.lr", "NaN"),
        ("optimizer.lr", -1.0),
        ("model.hidden_sizes", [limits.MAX_WIDTH + 1]),
        ("model.hidden_sizes", [8] * (limits.MAX_LAYERS + 1)),
        ("training.seed", "zero"),
    ],
)
def test_specs_over_limits_or_of_wrong_types_are_422(client: TestClient, path: str, value: object) -> None:
    body: dict = {**SPEC, "model": dict(SPEC["model"]), "training": dict(SPEC["training"]), "optimizer": {}}
    section, field = path.split(".")
    body[section][field] = value
    response = (
        client.post("/v1/jobs", json=body)
        if value != "NaN"
        else client.post(
            "/v1/jobs",
            content=b'{"dataset": {"name": "moons"}, "model": {"arch": "mlp"}, "optimizer": {"lr": NaN}}',
            headers={"content-type": "application/json"},
        )
    )
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(path) for e in response.json()["errors"]), response.json()


def test_an_owner_over_the_queued_limit_gets_429(api_settings: Settings) -> None:
    from app.api.main import create_app

    limited = api_settings.model_copy(update={"max_queued_jobs_per_owner": 2})
    with TestClient(create_app(limited)) as api:
        api.headers["Authorization"] = f"Bearer {new_token(limited, 'queue-filler')}"
        codes = [api.post("/v1/jobs", json=SPEC).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        refused = api.post("/v1/jobs", json=SPEC)
        assert refused.headers["retry-after"] and "queued" in refused.json()["detail"]
