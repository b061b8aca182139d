"""Datasets that say what they are: a target-like column is asked about, names and classes are kept, the same
bytes are stored once, and a spec's `dataset: {id}` trains locally with `nnforge train`."""

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from fastapi.testclient import TestClient
from live_stack import LiveStack
from support import ROOT

from models.checkpoint import load_model

SPECIES = ["setosa", "versicolor", "virginica"]
IRIS_LIKE = "sepal,petal,species\n" + "".join(
    f"{i % 7 * 0.3 + (i % 3) * 2:.2f},{(i % 3) * 1.5 + i % 5 * 0.1:.2f},{SPECIES[i % 3]}\n" for i in range(60)
)
WITH_TARGET = "a,b,target\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(20))


def _upload(client: TestClient, filename: str, data: str, **form: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/datasets", files={"file": (filename, data.encode())}, data=form)


def test_a_column_named_like_the_target_must_be_chosen(client: TestClient) -> None:
    refused = _upload(client, "t.csv", WITH_TARGET)
    assert refused.status_code == 422
    issue = refused.json()["errors"][0]
    assert issue["field"] == "label_column"
    assert "'target'" in issue["reason"] and "unlabelled=true" in issue["reason"]

    as_features = _upload(client, "t.csv", WITH_TARGET, unlabelled="true")
    assert as_features.status_code == 201
    assert as_features.json()["task"] == "unlabelled"
    assert as_features.json()["feature_names"] == ["a", "b", "target"]

    labelled = _upload(client, "t.csv", WITH_TARGET, label_column="target")
    assert labelled.status_code == 201
    assert labelled.json()["task"] == "classification"
    assert labelled.json()["feature_names"] == ["a", "b"]


def test_integer_labels_beyond_2_pow_53_are_refused_and_those_within_come_back_exact(
    client: TestClient,
) -> None:
    """A JSON number beyond 2**53 - 1 reads as a neighbouring number in JavaScript (the dashboard): such
    labels are refused with a 422 naming the label; labels up to the bound come back as the same numbers."""
    rows = "".join(f"{i},{label}\n" for i, label in enumerate([1, 2**53 + 1, 1, 2**53 + 1]))
    refused = _upload(client, "ids.csv", "a,label\n" + rows, label_column="label")
    assert refused.status_code == 422
    reason = refused.json()["errors"][0]["reason"]
    assert "the label 9007199254740993 is beyond ±9,007,199,254,740,991" in reason

    bound = 2**53 - 1
    rows = "".join(f"{i},{label}\n" for i, label in enumerate([-bound, bound, -bound, bound]))
    kept = _upload(client, "edge.csv", "a,label\n" + rows, label_column="label")
    assert kept.status_code == 201, kept.text
    assert kept.json()["classes"] == [-bound, bound]


def test_an_upload_keeps_feature_and_class_names_a_name_and_a_description(client: TestClient) -> None:
    response = _upload(
        client, "flowers.csv", IRIS_LIKE, label_column="species", name="flowers", description="a small study"
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["name"], dataset["description"], dataset["filename"]) == (
        "flowers",
        "a small study",
        "flowers.csv",
    )
    assert dataset["feature_names"] == ["sepal", "petal"]
    assert dataset["classes"] == ["setosa", "versicolor", "virginica"]
    assert client.get(f"/v1/datasets/{dataset['id']}").json() == dataset


def test_the_same_bytes_uploaded_again_answer_the_stored_dataset_unless_forced(client: TestClient) -> None:
    data = WITH_TARGET + "99,98,1\n"  # bytes no other test of this owner uploads
    first = _upload(client, "again.csv", data, label_column="target")
    again = _upload(client, "renamed.csv", data, label_column="target")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    read_otherwise = _upload(client, "again.csv", data, unlabelled="true")
    assert read_otherwise.status_code == 201 and read_otherwise.json()["id"] != first.json()["id"]
    forced = _upload(client, "again.csv", data, label_column="target", force="true")
    assert forced.status_code == 201 and forced.json()["id"] != first.json()["id"]
    ids = [d["id"] for d in client.get("/v1/datasets").json()["items"] if d["id"]]
    assert ids.count(first.json()["id"]) == 1


def test_the_file_downloads_as_uploaded_for_its_owner_only(client: TestClient) -> None:
    dataset = _upload(client, "mine.csv", IRIS_LIKE, label_column="species").json()
    response = client.get(f"/v1/datasets/{dataset['id']}/file")
    assert response.status_code == 200 and response.content == IRIS_LIKE.encode()
    from conftest import new_token

    stranger = {"Authorization": f"Bearer {new_token(client.app.state.settings, 'stranger')}"}  # type: ignore[attr-defined]
    assert client.get(f"/v1/datasets/{dataset['id']}/file", headers=stranger).status_code == 404


def test_nnforge_train_reads_a_dataset_id_from_the_service(live_stack: LiveStack, tmp_path: Path) -> None:
    from app.client.client import Client

    uploaded = Client(live_stack.url, live_stack.token).upload_dataset(
        _write(tmp_path / "flowers.csv", IRIS_LIKE), label_column="species"
    )
    spec = {
        "dataset": {"id": uploaded["id"]},
        "model": {"arch": "mlp", "hidden_sizes": [8]},
        "training": {"epochs": 2},
    }
    spec_file = _write(tmp_path / "job.yaml", yaml.safe_dump(spec))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
    env |= {"NNFORGE_URL": live_stack.url, "NNFORGE_TOKEN": live_stack.token}
    done = subprocess.run(
        [sys.executable, "-c", "from app.client.cli import main; main()", "train", str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    model = load_model(tmp_path / "job.pt")
    assert model.dataset_info["classes"] == ["setosa", "versicolor", "virginica"]
    assert model.dataset_info["feature_names"] == ["sepal", "petal"]
    assert model(torch.tensor([[0.3, 0.1]])).shape == (1, 3)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
