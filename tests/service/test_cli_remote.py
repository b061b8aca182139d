"""The remote CLI as a user runs it (a subprocess) against a real API server and Celery worker."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from live_stack import LiveStack
from safetensors.torch import load_file
from support import ROOT, TINY_GAN, free_port, wait_for

from app.client.client import Client, NnforgeError
from models.checkpoint import load_model

MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [16]},
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 5, "seed": 1},
}


def _env(stack: LiveStack) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "NNFORGE_URL": stack.url,
        "NNFORGE_TOKEN": stack.token,
        "HOME": "/nonexistent",
        "COLUMNS": "200",
    }


def _nnforge(stack: LiveStack, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from app.client.cli import main; main()", *args],
        cwd=cwd,
        env=_env(stack),
        capture_output=True,
        text=True,
        timeout=240,
    )


def _spec_file(folder: Path, spec: dict, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_submit_follows_to_success_then_status_metrics_logs_and_downloads(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    spec_file = _spec_file(tmp_path, MOONS)
    run = _nnforge(live_stack, "submit", str(spec_file), "--set", "training.epochs=3", "--name", "cli-run")
    assert run.returncode == 0, run.stderr + live_stack.logs()
    job_id = re.search(r"submitted job (\S+)", run.stderr).group(1)
    assert "epoch 1/3" in run.stderr and "epoch 3/3" in run.stderr and "val_accuracy" in run.stderr
    assert "succeeded" in run.stderr

    status = json.loads(_nnforge(live_stack, "status", job_id, "-o", "json").stdout)
    assert (status["status"], status["name"], status["progress"]["epoch"]) == ("succeeded", "cli-run", 3)
    listed = json.loads(_nnforge(live_stack, "list", "-o", "json").stdout)
    assert job_id in [job["id"] for job in listed]
    series = json.loads(_nnforge(live_stack, "metrics", job_id, "-o", "json").stdout)
    assert [p["epoch"] for p in series["val_accuracy"]] == [1, 2, 3]
    table = _nnforge(live_stack, "metrics", job_id).stdout
    assert "val_accuracy" in table and re.search(r"^\s*3\s", table, re.MULTILINE)
    logs = _nnforge(live_stack, "logs", job_id).stdout
    assert "training process" in logs and f"job {job_id} epoch 3/3" in logs

    target = str(tmp_path / "w.safetensors")
    weights = _nnforge(live_stack, "download", job_id, target, "--format", "safetensors")
    assert weights.returncode == 0, weights.stderr
    tensors = load_file(tmp_path / "w.safetensors")
    saved = _nnforge(live_stack, "download", job_id, str(tmp_path), "-o", "json")  # both the default, best
    model = load_model(json.loads(saved.stdout)["path"])
    assert torch.equal(tensors["model.layers.0.weight"], model.network.layers[0].weight)

    ort = pytest.importorskip("onnxruntime", reason="the optional extra nnforge[onnx]")
    onnx = _nnforge(
        live_stack, "download", job_id, str(tmp_path / "m.onnx"), "--format", "onnx", "--checkpoint", "best"
    )
    assert onnx.returncode == 0, onnx.stderr
    points = torch.randn(5, 2)
    (logits,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": points.numpy()})
    with torch.no_grad():
        assert np.allclose(logits, model(points).numpy(), atol=1e-5)


def test_submit_points_spec_errors_at_the_yaml_line(live_stack: LiveStack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "dataset: {name: moons}\nmodel:\n  arch: mlp\n  hidden_sizes: [0]\ntraining: {batch_size: 99999}\n"
    )
    run = _nnforge(live_stack, "submit", str(bad))
    assert run.returncode == 2
    assert f"{bad}:4:18: model.hidden_sizes.0" in run.stderr
    assert f"{bad}:5:24: training.batch_size" in run.stderr
    # Valid on its own, refused by the server's dry run: the server's field errors point into the file too.
    cnn = _spec_file(tmp_path, {**MOONS, "model": {"arch": "cnn"}}, "cnn.yaml")
    refused = _nnforge(live_stack, "submit", str(cnn))
    assert refused.returncode == 2
    assert f"{cnn}:4:9: model.arch" in refused.stderr  # the line of `arch: cnn`


def test_submit_exits_non_zero_when_its_job_is_cancelled(live_stack: LiveStack, tmp_path: Path) -> None:
    long = _spec_file(tmp_path, {**MOONS, "training": {"epochs": 500, "batch_size": 8}})
    follower = subprocess.Popen(
        [sys.executable, "-c", "from app.client.cli import main; main()", "submit", str(long)],
        cwd=ROOT,
        env=_env(live_stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = follower.stderr.readline()
        job_id = re.search(r"submitted job (\S+)", first).group(1)
        client = Client(live_stack.url, live_stack.token)
        wait_for(lambda: client.job(job_id).data["progress"]["step"] > 0, timeout=120, what="training")
        assert _nnforge(live_stack, "cancel", job_id).returncode == 0
        _, rest = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 1
    assert "cancelled" in rest
    assert _nnforge(live_stack, "status", job_id).returncode == 1


def test_client_streams_events_waits_and_uploads(live_stack: LiveStack, tmp_path: Path) -> None:
    with Client(live_stack.url, live_stack.token) as client:
        job = client.submit({**MOONS, "training": {"epochs": 2}}, name="sdk")
        kinds = [event.event for event in job.stream()]
        assert kinds[0] == "status" and kinds[-1] == "end" and "metrics" in kinds and "progress" in kinds
        assert job.wait().status == "succeeded"
        assert len(job.metrics(["val_loss"])["val_loss"]) == 2
        assert [c["epoch"] for c in job.checkpoints()] == [1, 2]
        with pytest.raises(NnforgeError) as refused:  # an MLP generates nothing
            job.samples()
        assert refused.value.status == 404 and "generative" in refused.value.detail

        gan = client.submit(TINY_GAN | {"training": {"epochs": 2}}, name="sdk-gan").wait()
        assert gan.status == "succeeded"
        drawn = gan.samples()
        assert (drawn["epoch"], drawn["kind"], drawn["shape"]) == (2, "points", [2])
        assert len(drawn["samples"]) > 0 and all(len(point) == 2 for point in drawn["samples"])
        printed = _nnforge(live_stack, "samples", gan.id, "-o", "json")
        assert printed.returncode == 0, printed.stderr
        assert json.loads(printed.stdout) == drawn
        told = _nnforge(live_stack, "samples", gan.id)
        assert f"epoch 2: {len(drawn['samples'])} generated points of shape (2,)" in told.stdout

        csv = tmp_path / "points.csv"
        csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
        uploaded = client.upload_dataset(csv, label_column="label")
        assert uploaded["task"] == "classification"
        assert uploaded["id"] in [d["id"] for d in client.datasets()]


def test_cli_says_when_the_service_is_unreachable(live_stack: LiveStack) -> None:
    run = _nnforge(live_stack, "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 3 and "cannot reach" in run.stderr


@pytest.mark.parametrize("args", [["status", "no-such-job"], ["download", "no-such-job", "--format", "zip"]])
def test_cli_bad_arguments_exit_2(live_stack: LiveStack, args: list[str]) -> None:
    run = _nnforge(live_stack, *args)
    assert run.returncode == 2, run.stderr
    assert "error" in run.stderr
