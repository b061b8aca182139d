"""The job's life stays in one module: the code, the docs and the rest of the tree agree on it."""

import ast
from pathlib import Path

from app.db import job_state
from app.db.job_state import TRANSITIONS, JobStatus, transitions_table

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("app", "workers", "models", "bench", "nnforge")
JOB_STATE = ROOT / "app" / "db" / "job_state.py"


def _product_files() -> list[Path]:
    return [path for package in PRODUCT for path in (ROOT / package).rglob("*.py")]


def _updates_job(node: ast.AST) -> bool:
    return any(
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "update"
        and [ast.unparse(a) for a in call.args] == ["Job"]
        for call in ast.walk(node)
    )


def test_docs_show_the_transitions_of_the_code() -> None:
    assert transitions_table() in (ROOT / "docs" / "job-states.md").read_text()


def test_every_state_change_is_a_listed_transition() -> None:
    tree = ast.parse(JOB_STATE.read_text())
    changing = {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and _updates_job(f)}
    # Both ways of settling a lost run share one UPDATE, `_settle`.
    listed = {t.name for t in TRANSITIONS} - {"settle_lost_run", "take_back_lapsed"} | {"_settle"}
    assert changing == listed
    assert all(callable(getattr(job_state, t.name)) for t in TRANSITIONS)


def test_only_job_state_updates_a_job() -> None:
    updating = [p.relative_to(ROOT) for p in _product_files() if _updates_job(ast.parse(p.read_text()))]
    assert updating == [JOB_STATE.relative_to(ROOT)]


# Modules about another resource whose states share the words: evaluations (queued … failed), sweeps and
# their trials (running, pruned, …). A job's status is still spelled only in app/db/job_state.py.
OTHER_STATES = {
    f"{ROOT}/{path}"
    for path in (
        "app/db/evaluations.py",
        "app/client/evaluations.py",
        "app/client/cli_evaluate.py",
        "workers/evaluations.py",
        "app/client/sweeps.py",
        "app/client/cli_sweeps.py",
        "bench/sweep.py",
    )
}


def test_status_names_are_spelled_once() -> None:
    names = {status.value for status in JobStatus}
    spelled = [
        (str(path.relative_to(ROOT)), node.lineno, node.value)
        for path in _product_files()
        if path != JOB_STATE and str(path) not in OTHER_STATES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert spelled == []
