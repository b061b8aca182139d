"""The sweep pages in a real Chromium against the live API and worker: a small real sweep with ASHA pruning,
started from the Python client and watched from the sweeps list and its own page until it ends — its
trials table (sortable, pruned trials marked), the objective per trial with the best so far, a scatter per
parameter with pruned trials drawn apart, links to each trial's job and a comparison of the top trials."""

from typing import Any

from live_stack import LiveStack
from test_dashboard import ARTIFACTS, NO_SIDEWAYS_SCROLL, browser, page, page_errors  # noqa: F401  (fixtures)

from app.client.client import Client

# Three trials of two epochs on moons, one at a time. ASHA (first rung at epoch 1, keeping the top third)
# prunes a trial that is not the best so far after its first epoch. With this seed (a trial's parameters
# depend on seed + its number) the learning rates come 1e-6, 0.3, 1e-6: two trials complete, each the best
# so far, and the third is pruned.
SWEEP = {
    "name": "browser-sweep",
    "base": {
        "dataset": {"name": "moons"},
        "model": {"arch": "mlp"},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "training": {"epochs": 2, "seed": 1},
    },
    "space": {
        "optimizer.lr": {"choices": [0.3, 1.0e-6]},
        "model.hidden_sizes": {"choices": [[8], [16]]},
    },
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 3,
    "parallel": 1,
    "sampler": "random",
    "seed": 3,
    "pruner": "asha",
}
# What each chart on the sweep page draws: its parameter (none: the objective's chart), its series' labels,
# its data and the fill of each series' points.
CHARTS = """() => [...document.querySelectorAll(".chart")].map((element) => {
  const plot = element.sweepPlot;
  return {
    param: element.dataset.param || null, points: Number(element.dataset.points),
    pruned: Number(element.dataset.pruned), labels: plot.series.slice(1).map((s) => s.label),
    data: plot.data, fills: plot.series.slice(1).map((s, i) => {
      const fill = s.points.fill; // uPlot may hold it as a function of the plot and the series
      return typeof fill === "function" ? fill(plot, i + 1) : fill;
    }),
  };
})"""
ROWS = """() => [...document.querySelectorAll("#trials tbody tr")].map((row) => ({
  number: Number(row.dataset.number), className: row.className,
  state: row.cells[1].textContent, job: row.querySelector("a").getAttribute("href"),
}))"""


def _ended(trials: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    return [trial for trial in trials if trial["state"] == state]


def test_sweep_pages_show_trials_charts_and_pruned_trials(  # type: ignore[no-untyped-def]
    page,  # noqa: F811  (a fixture)
    live_stack: LiveStack,
) -> None:
    with Client(live_stack.url, live_stack.token) as client:
        sweep = client.sweep(SWEEP)

        # The sweeps list links to the sweep's page, which follows the sweep until it ends.
        page.goto("/ui/sweeps")
        link = page.wait_for_selector(f"#sweeps tr[data-sweep-id='{sweep.id}'] a")
        assert link.text_content() == "browser-sweep"
        link.click()
        page.wait_for_url(f"**/ui/sweeps/{sweep.id}")
        page.wait_for_selector("body[data-ended='succeeded']", timeout=180_000)

        sweep.wait(timeout=30)
        trials, best = sweep.trials(), sweep.best()
    assert best is not None
    complete, pruned = _ended(trials, "complete"), _ended(trials, "pruned")
    assert len(trials) == 3 and len(pruned) == 1 and len(complete) == 2, trials
    assert page.text_content("#sweep-status") == "succeeded"
    assert page.text_content("#sweep-best-job") == best["job_id"][:8]

    # A row per trial, each linking to its job; pruned rows are marked, the best row too.
    rows = page.evaluate(ROWS)
    assert [row["number"] for row in rows] == [trial["number"] for trial in trials]
    for row, trial in zip(rows, trials, strict=True):
        assert row["state"] == trial["state"] and row["job"] == f"/ui/jobs/{trial['job_id']}"
        assert ("pruned" in row["className"].split()) == (trial["state"] == "pruned")
        assert ("best" in row["className"].split()) == (trial["number"] == best["number"])

    # Sorted by the objective, highest first (the header clicked twice), as the API sorts.
    page.click("#trials th[data-key='value'] button")
    page.click("#trials th[data-key='value'] button")
    by_value = sorted(trials, key=lambda t: (-t["value"], t["number"]))
    assert [row["number"] for row in page.evaluate(ROWS)] == [t["number"] for t in by_value]
    assert page.url.endswith("?sort=-value")

    # The objective per trial: complete dots, pruned rings (white-filled), the best so far ending at the best.
    objective, *parameters = page.evaluate(CHARTS)
    assert objective["labels"] == ["complete", "pruned", "best so far"]
    xs, complete_ys, pruned_ys, best_ys = objective["data"]
    assert xs == [trial["number"] for trial in trials]
    assert [y for y in complete_ys if y is not None] == [t["value"] for t in complete]
    assert [y for y in pruned_ys if y is not None] == [t["value"] for t in pruned]
    assert best_ys[-1] == best["value"] == max(t["value"] for t in complete)
    assert objective["fills"][1] == "#fff" and objective["fills"][0] != "#fff"
    assert objective["pruned"] == len(pruned)

    # A scatter per parameter over every ended trial, pruned ones apart.
    assert sorted(chart["param"] for chart in parameters) == sorted(SWEEP["space"])
    for chart in parameters:
        assert (chart["points"], chart["pruned"]) == (len(trials), len(pruned))
        assert chart["labels"] == ["complete", "pruned"] and chart["fills"][1] == "#fff"
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-sweep.png"), full_page=True)

    # A trial's job page links back to its sweep.
    page.click(f"#trials tr[data-number='{pruned[0]['number']}'] a")
    page.wait_for_selector(f"#job-sweep:has-text('trial {pruned[0]['number']} of a sweep')")
    assert page.is_hidden("#cancel")  # pruned is a terminal state: nothing to cancel
    page.click("#job-sweep")
    page.wait_for_selector("body[data-ended='succeeded']")

    # The top complete trials, best first, open side by side on the compare page.
    top = sorted(complete, key=lambda t: -t["value"])[:5]
    href = page.get_attribute("#compare-top", "href")
    assert href == "/ui/compare?ids=" + ",".join(t["job_id"] for t in top)
    page.click("#compare-top")
    page.wait_for_selector("#compare-params thead th a")
    shown = page.eval_on_selector_all("#compare-params thead th a", "(links) => links.map((a) => a.href)")
    assert [link.rsplit("/", 1)[1] for link in shown] == [t["job_id"] for t in top]
