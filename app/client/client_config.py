"""Where the client finds the server and its token: arguments, then the environment (NNFORGE_URL,
NNFORGE_TOKEN), then a config file, then the embedded server's defaults (`nnforge serve` on
http://127.0.0.1:8000, writing its token to $NNFORGE_HOME/token)."""

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None


def config_path() -> Path:
    """$NNFORGE_CONFIG, else $XDG_CONFIG_HOME/nnforge/config.toml (~/.config/nnforge/config.toml)."""
    if explicit := os.environ.get("NNFORGE_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "nnforge" / "config.toml"


def _config_file() -> dict[str, str]:
    path = config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return {key: str(data[key]) for key in ("url", "token") if key in data}


def _embedded_token() -> str | None:
    path = Path(os.environ.get("NNFORGE_HOME", ".nnforge")) / "token"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def resolve_config(url: str | None = None, token: str | None = None) -> ClientConfig:
    from_file = _config_file()
    resolved_url = url or os.environ.get("NNFORGE_URL") or from_file.get("url") or DEFAULT_URL
    resolved_token = token or os.environ.get("NNFORGE_TOKEN") or from_file.get("token") or _embedded_token()
    return ClientConfig(resolved_url.rstrip("/"), resolved_token)
