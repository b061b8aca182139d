"""Where the client finds the service and its token: arguments, env, config file, then `nnforge serve`'s."""

from pathlib import Path

import pytest

from app.client.client_config import DEFAULT_URL, resolve_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("NNFORGE_URL", "NNFORGE_TOKEN", "NNFORGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("NNFORGE_HOME", str(tmp_path / "home"))


def test_defaults_are_the_embedded_server_and_its_token_file(tmp_path: Path) -> None:
    assert resolve_config().token is None
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "token").write_text("nnf_local\n")
    assert resolve_config() == resolve_config(None, None)
    assert (resolve_config().url, resolve_config().token) == (DEFAULT_URL, "nnf_local")


def test_config_file_then_env_then_arguments_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config" / "nnforge").mkdir(parents=True)
    (tmp_path / "config" / "nnforge" / "config.toml").write_text('url = "http://a:1/"\ntoken = "nnf_file"\n')
    assert (resolve_config().url, resolve_config().token) == ("http://a:1", "nnf_file")
    monkeypatch.setenv("NNFORGE_URL", "http://b:2")
    monkeypatch.setenv("NNFORGE_TOKEN", "nnf_env")
    assert (resolve_config().url, resolve_config().token) == ("http://b:2", "nnf_env")
    assert resolve_config("http://c:3", "nnf_arg").token == "nnf_arg"


def test_a_broken_config_file_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("url = \n")
    monkeypatch.setenv("NNFORGE_CONFIG", str(broken))
    with pytest.raises(ValueError, match=r"broken\.toml"):
        resolve_config()
