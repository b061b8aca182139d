"""Predict through the live service (uvicorn + a Celery worker, as users run it): the Python client, the CLI
and the job page's try-it box in Chromium, on jobs the worker trained. The API process serves from ONNX
Runtime and never loads torch, even after exporting and serving a checkpoint."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import safetensors.torch
import torch
from live_stack import LiveStack
from sklearn.datasets import load_digits
from support import ROOT

# The dashboard test's Chromium and its page (token saved, no uncaught script error when it closes).
from test_dashboard import browser, page, page_errors  # noqa: F401

from app.client.client import Client, Job
from models.checkpoint import load_model, read_checkpoint

DIGITS_MLP = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [32]},
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 3, "seed": 0},
}
DIGITS = load_digits()


@pytest.fixture(scope="module")
def digits_job(live_stack: LiveStack) -> Job:
    job = Client(live_stack.url, live_stack.token).submit(DIGITS_MLP, name="predict-digits").wait()
    assert job.status == "succeeded", live_stack.logs()
    return job


def _nnforge(stack: LiveStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-c", "from app.client.cli import main; main()", *args],
        cwd=ROOT,
        env=env | {"NNFORGE_URL": stack.url, "NNFORGE_TOKEN": stack.token},
        capture_output=True,
        text=True,
        timeout=240,
    )


def _api_pid(stack: LiveStack) -> int:
    match = re.search(r"Started server process \[(\d+)\]", stack.api_log.read_text())
    assert match, stack.logs()
    return int(match.group(1))


def test_client_predict_onnx_and_safetensors_downloads_leave_the_api_process_without_torch(
    live_stack: LiveStack, digits_job: Job, tmp_path: Path
) -> None:
    x = DIGITS.data[:20].astype(np.float32)
    answer = digits_job.predict(x)
    model = load_model(digits_job.download(tmp_path, checkpoint="best"))
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5, rtol=0)
    assert answer["classes"] == expected.argmax(axis=1).tolist()
    # The ONNX download is the file predict serves, its metadata naming the dataset.
    onnx_file = ort.InferenceSession(str(digits_job.download(tmp_path, format="onnx")))
    assert "digits" in onnx_file.get_modelmeta().custom_metadata_map["nnforge.dataset_info"]
    (logits,) = onnx_file.run(None, {"input": x.reshape(-1, 8, 8)})
    assert logits.argmax(axis=1).tolist() == answer["classes"]
    # safetensors is converted in a child too
    weights = safetensors.torch.load_file(digits_job.download(tmp_path, format="safetensors"))
    stored = read_checkpoint(digits_job.download(tmp_path, checkpoint="best").read_bytes())["model"]
    assert stored and all(torch.equal(weights[f"model.{k}"], v) for k, v in stored.items())
    # What the API process has mapped: ONNX Runtime's library, and none of torch's (an import of torch,
    # anywhere in the process, maps its shared libraries).
    maps = Path(f"/proc/{_api_pid(live_stack)}/maps").read_text()
    assert "onnxruntime" in maps
    assert "libtorch" not in maps and "/torch/lib/" not in maps


def test_cli_predict_reads_npy_and_csv_and_a_csv_upload_answers_its_string_classes(
    live_stack: LiveStack, digits_job: Job, tmp_path: Path
) -> None:
    samples = DIGITS.data[:4].reshape(-1, 8, 8)
    np.save(tmp_path / "digits.npy", samples)
    npy = str(tmp_path / "digits.npy")
    result = _nnforge(live_stack, "predict", digits_job.id[:8], "--input", npy, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classes"] == digits_job.predict(samples)["classes"]

    # Two clusters named by words: the answers are those words, as strings.
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(-2, 0.5, (40, 2)), rng.normal(2, 0.5, (40, 2))])
    names = ["small"] * 40 + ["large"] * 40
    upload = tmp_path / "sizes.csv"
    rows = [f"{a:.4f},{b:.4f},{n}\n" for (a, b), n in zip(points, names, strict=True)]
    upload.write_text("a,b,size\n" + "".join(rows))
    client = Client(live_stack.url, live_stack.token)
    dataset = client.upload_dataset(upload, label_column="size", force=True)
    spec = {"dataset": {"id": dataset["id"]}, "model": {"arch": "mlp", "hidden_sizes": [8]}}
    job = client.submit(spec | {"optimizer": {"name": "adam", "lr": 0.05}, "training": {"epochs": 5}}).wait()
    assert job.status == "succeeded", live_stack.logs()
    features = tmp_path / "features.csv"
    features.write_text("a,b\n-2,-2.1\n2.2,1.9\n")  # a header row is skipped
    text = _nnforge(live_stack, "predict", job.id, "--input", str(features))
    assert text.returncode == 0, text.stderr
    assert [line.split("\t")[1] for line in text.stdout.splitlines()] == ["small", "large"]
    answer = job.predict([[-2, -2.1], [2.2, 1.9]])
    assert answer["classes"] == ["small", "large"] and sorted(answer["labels"]) == ["large", "small"]


def test_cli_predict_refuses_a_wrong_shape_naming_the_expected_one(
    live_stack: LiveStack, digits_job: Job, tmp_path: Path
) -> None:
    (tmp_path / "row.csv").write_text("1,2,3\n")
    result = _nnforge(live_stack, "predict", digits_job.id, "--input", str(tmp_path / "row.csv"))
    assert result.returncode == 2
    assert "inputs" in result.stderr and "[8, 8]" in result.stderr


def test_job_page_try_it_box_classifies_a_drawing_and_a_pasted_digit(
    page,  # noqa: F811 (the fixture imported above)
    live_stack: LiveStack,
    digits_job: Job,
) -> None:
    page.goto(f"/ui/jobs/{digits_job.id}")
    page.wait_for_selector("#predict-grid div")
    page.locator("#predict-grid").scroll_into_view_if_needed()  # the mouse draws where the page shows it
    cells = page.locator("#predict-grid div")
    # A vertical stroke down the middle column: a "1", roughly.
    top, bottom = cells.nth(1 * 8 + 4).bounding_box(), cells.nth(6 * 8 + 4).bounding_box()
    page.mouse.move(top["x"] + 10, top["y"] + 10)
    page.mouse.down()
    page.mouse.move(bottom["x"] + 10, bottom["y"] + 10, steps=12)
    page.mouse.up()
    # The first predict of a checkpoint waits for its export (seconds; more on a loaded machine).
    page.wait_for_function("document.getElementById('predict-result').dataset.classes", timeout=180_000)
    drawn = [float(v) for v in page.input_value("#predict-input").split()]
    assert len(drawn) == 64 and drawn.count(16.0) >= 6  # the stroke inked the column
    shown = json.loads(page.get_attribute("#predict-result", "data-classes") or "null")
    assert shown == digits_job.predict([drawn])["classes"]

    page.click("#predict-clear")
    digit = DIGITS.data[10]
    page.fill("#predict-input", " ".join(f"{v:g}" for v in digit))
    page.click("#predict-run")
    page.wait_for_function("document.getElementById('predict-result').dataset.classes")
    shown = json.loads(page.get_attribute("#predict-result", "data-classes") or "null")
    assert shown == digits_job.predict([digit.tolist()])["classes"]
    assert page.text_content("#predict-result").startswith(f"class {shown[0]} (")
