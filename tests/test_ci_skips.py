"""In CI a skip is a failure (tests/conftest.py): a missing service, optional extra or browser must not let
the suite pass with tests silently dropped. Checked on a small suite run with the same conftest."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, in_ci

SKIPPING_SUITE = {
    "test_skips.py": """
import pytest

def test_runs():
    pass

def test_skips_at_run_time():
    pytest.skip("service not reachable")

@pytest.mark.skip(reason="a marker")
def test_marked():
    pass

@pytest.fixture
def missing_service():
    pytest.skip("fixture found no service")

def test_needs_a_service(missing_service):
    pass
""",
    "test_module_skip.py": """
import pytest

pytest.importorskip("nnforge_no_such_extra", reason="an optional extra")

def test_never_collected():
    pass
""",
}


TRUE_VALUES = ["true", "TRUE", "1", "yes", " Yes "]
OTHER_VALUES = ["false", "FALSE", "0", "no", "", None]  # None: CI unset


@pytest.mark.parametrize("value", [*TRUE_VALUES, *OTHER_VALUES])
def test_in_ci_only_for_a_true_value(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is (value in TRUE_VALUES)


def _run_suite(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    for name, source in SKIPPING_SUITE.items():
        (tmp_path / name).write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env |= {"CI": ci, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-ra", "--continue-on-collection-errors"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_skip_fails_in_ci(tmp_path: Path) -> None:
    run = _run_suite(tmp_path, "true")
    assert run.returncode == 1, run.stdout + run.stderr
    # a skip at run time is a failure; at set-up or collection, an error (pytest's words for the phases)
    assert "1 failed, 1 passed, 3 errors" in run.stdout, run.stdout
    for reason in ("service not reachable", "a marker", "fixture found no service", "an optional extra"):
        assert (
            f"skipped in CI, where every test must run (set CI=false to allow skips): {reason}\n"
            in run.stdout
        )
    assert "skips refused in CI: 4 (each reported as a failure above)" in run.stdout


def test_skips_stay_skips_and_are_counted_outside_ci(tmp_path: Path) -> None:
    run = _run_suite(tmp_path, "false")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 4 skipped" in run.stdout, run.stdout
    assert "skipped tests: 4 (in CI each would fail)" in run.stdout
