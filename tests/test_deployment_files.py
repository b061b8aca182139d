"""No Docker engine runs here, so the deployment files are checked by reading them: every command names
a real module and entry point, every variable is a setting nnforge knows."""

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from app.client.cli import cli
from app.client.serve import api_command, uvicorn_config
from app.core.settings import Settings
from app.core.slow_clients import ReadTimeouts

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OUR_SERVICES = ["migrate", "api", "worker"]
EXTERNAL_VARIABLES = {"CUDA_VISIBLE_DEVICES"}  # read by CUDA, not by nnforge


def _check_command(command: list[str]) -> None:
    if command[:2] == ["python", "-m"]:
        module, args = command[2], command[3:]
        assert importlib.util.find_spec(module) is not None, module
        if module == "app.client.cli":
            names = {c.name or c.callback.__name__ for c in cli.registered_commands}  # type: ignore[union-attr]
            assert args[0] in names, f"nnforge has no command {args[0]!r}"
    elif command[0] == "uvicorn":
        module, factory = command[1].split(":")
        assert callable(getattr(importlib.import_module(module), factory))
        assert "--factory" in command
    else:
        pytest.fail(f"unexpected command {command}")


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_compose_commands_name_real_modules(service: str) -> None:
    _check_command(COMPOSE["services"][service]["command"])


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_compose_variables_are_known_settings(service: str) -> None:
    known = {name.upper() for name in Settings.model_fields} | EXTERNAL_VARIABLES
    variables = set(COMPOSE["services"][service]["environment"]) - {"<<"}
    assert variables <= known, variables - known


def test_compose_has_the_stack_and_a_gpu_reservation() -> None:
    services = COMPOSE["services"]
    assert {"api", "worker", "redis", "postgres", "migrate", "flower"} <= set(services)
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_dockerfile_cmd_and_copies_exist() -> None:
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    _check_command(yaml.safe_load(cmd.group(1)))
    for source in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (ROOT / source).exists(), source
    assert "ARG BASE_IMAGE=" in text


def test_every_api_process_runs_nnforge_api_with_the_settings() -> None:
    """The Dockerfile, docker-compose.yml and `nnforge serve` (api_command) all start `nnforge api`, which
    gives uvicorn the read timeouts and the connection cap of the settings (a `uvicorn` command line cannot
    set the timeouts)."""
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None
    dockerfile = yaml.safe_load(cmd.group(1))
    compose = COMPOSE["services"]["api"]["command"]
    served = api_command(Settings())
    for command in (dockerfile, compose, ["python", *served[1:]]):
        assert command[:4] == ["python", "-m", "app.client.cli", "api"], command
    settings = Settings(
        header_timeout_seconds=3,
        body_timeout_seconds=7,
        body_min_bytes_per_second=99,
        keep_alive_seconds=11,
        max_connections=42,
    )
    config = uvicorn_config(settings)
    assert config.http.timeouts == ReadTimeouts(3, 7, 99)  # type: ignore[union-attr]
    assert (config.timeout_keep_alive, config.limit_concurrency) == (11, 43)  # 42 open, the 43rd gets 503
