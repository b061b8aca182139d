"""`nnforge train` and `nnforge template`, run as a user would: a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from models.specs import parse_job_spec
from models.templates import TEMPLATES

ROOT = Path(__file__).resolve().parents[1]


def _nnforge(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from app.client.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_template_prints_a_valid_spec_for_every_template() -> None:
    for name in TEMPLATES:
        result = _nnforge("template", "--arch", name)
        assert result.returncode == 0, result.stderr
        assert (
            parse_job_spec(yaml.safe_load(result.stdout)).model_dump()
            == parse_job_spec(TEMPLATES[name]).model_dump()
        )
    as_json = _nnforge("template", "--arch", "cnn", "-o", "json")
    assert json.loads(as_json.stdout)["model"]["arch"] == "cnn"


def test_template_refuses_an_unknown_arch() -> None:
    result = _nnforge("template", "--arch", "transformer")
    assert result.returncode == 2
    assert "--arch" in result.stderr and "mlp" in result.stderr


def test_train_writes_a_loadable_checkpoint_and_prints_each_epoch(tmp_path: Path) -> None:
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(
        yaml.safe_dump({"dataset": {"name": "moons"}, "model": {"arch": "mlp"}, "training": {"epochs": 5}})
    )
    result = _nnforge("train", str(spec_file), "--set", "training.epochs=2", "--set", "optimizer.lr=0.01")
    assert result.returncode == 0, result.stderr
    assert "epoch 1/2" in result.stderr and "epoch 2/2" in result.stderr
    checkpoint = torch.load(tmp_path / "job.pt", weights_only=True)
    assert checkpoint["progress"]["epoch"] == 2
    assert checkpoint["spec"]["optimizer"]["lr"] == 0.01
    assert not list(tmp_path.glob("*.partial"))


def test_train_reports_spec_errors_by_field(tmp_path: Path) -> None:
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(
        "dataset: {name: digits}\nmodel: {arch: mlp, hidden_sizes: [0]}\ntraining: {batch_size: 99999}\n"
    )
    result = _nnforge("train", str(spec_file))
    assert result.returncode == 2
    assert "model.hidden_sizes.0" in result.stderr and "training.batch_size" in result.stderr


def test_train_points_at_the_yaml_line_of_a_syntax_error(tmp_path: Path) -> None:
    spec_file = tmp_path / "broken.yaml"
    spec_file.write_text("dataset: {name: digits}\nmodel: [arch: mlp\n")
    result = _nnforge("train", str(spec_file))
    assert result.returncode == 2
    assert "line 3" in result.stderr or "line 2" in result.stderr
