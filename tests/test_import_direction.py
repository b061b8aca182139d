"""The dependency direction holds: models/ knows no service code; the API side starts without torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_modules(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_models_imports_no_service_code() -> None:
    forbidden = {"app", "workers", "fastapi", "celery", "sqlalchemy", "starlette"}
    assert _imported_top_modules("models") & forbidden == set()


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(","))


def test_specs_and_cli_import_without_torch() -> None:
    loaded = _modules_after_import("import models.specs, models.uploads, models.templates, app.client.cli")
    assert "torch" not in loaded
    assert "models.specs" in loaded


def test_models_package_loads_torch_only_on_use() -> None:
    assert "torch" not in _modules_after_import("import models")
    assert "torch" in _modules_after_import("import models; models.fit")


def _modules_imported_under(folder: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def test_service_wings_never_import_the_client_side() -> None:
    for wing in ("app/api", "app/core", "app/db", "workers"):
        client_imports = {m for m in _modules_imported_under(wing) if m.startswith("app.client")}
        assert client_imports == set(), f"{wing} imports {client_imports}"


def test_nnforge_package_loads_its_names_on_use() -> None:
    loaded = _modules_after_import("import nnforge")
    assert "torch" not in loaded and "app.client.client" not in loaded
    assert "app.client.client" in _modules_after_import("from nnforge import Client")
    assert "torch" in _modules_after_import("from nnforge import load_model")
