"""Reading job specs from YAML or JSON files, with `--set path=value` overrides (torch-free)."""

from pathlib import Path
from typing import Any

import yaml

from models.errors import SpecError


def read_spec_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError.single("spec", str(path), f"cannot read the file: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError.single(
            "spec", str(path), f"not valid YAML{where}: {getattr(error, 'problem', error)}"
        ) from None
    if not isinstance(data, dict):
        raise SpecError.single(
            "spec", type(data).__name__, "the file must hold a mapping with dataset, model, …"
        )
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`optimizer.lr=0.01`: the value is read as YAML (numbers, lists, booleans); missing maps are made."""
    for override in overrides:
        path, sep, raw_value = override.partition("=")
        if not sep or not path:
            raise SpecError.single("--set", override, "expected PATH=VALUE, e.g. optimizer.lr=0.01")
        node = data
        *parents, leaf = path.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise SpecError.single(path, child, f"'{key}' is not a mapping")
            node = child
        node[leaf] = yaml.safe_load(raw_value)
    return data
