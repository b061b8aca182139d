"""Suite-wide: in CI (`support.in_ci()`) a skip is a failure, whatever raised it — a missing service, a
missing optional extra, a skip marker. Elsewhere skips stay skips; either way their count ends the output.

So a test may skip only for what CI provides: PostgreSQL, Redis, the server binaries, chromium, the extras,
root (a test that needs network namespaces skips, with its reason, where it cannot make them).
"""

from collections.abc import Iterator

import pytest
from support import in_ci

REFUSED = "skipped in CI, where every test must run (set CI=false to allow skips)"
_refused = pytest.StashKey[int]()


def _refuse_skip(config: pytest.Config, report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"{REFUSED}: {reason.removeprefix('Skipped: ')}"
    config.stash[_refused] = config.stash.get(_refused, 0) + 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        _refuse_skip(item.config, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    report = yield  # a module-level skip (pytest.importorskip) drops a whole file at collection
    if report.skipped and in_ci():
        _refuse_skip(collector.config, report)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after pytest's own summary, above the counts
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> Iterator[None]:
    yield
    if in_ci():
        refused = config.stash.get(_refused, 0)
        line = f"skips refused in CI: {refused}" + (" (each reported as a failure above)" if refused else "")
    else:
        skipped = len(terminalreporter.stats.get("skipped", []))
        line = f"skipped tests: {skipped}" + (" (in CI each would fail)" if skipped else "")
    terminalreporter.write_line(line, yellow=line[-1] == ")", bold=True)
