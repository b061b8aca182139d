"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real API server and
Celery worker: submit from the form, watch the curves grow, see the end, download, compare."""

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from live_stack import LiveStack
from support import ROOT, wait_for

from app.client.client import Client

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Long enough (about 7,500 steps, several seconds since the fused optimizer: with batches of 8 it ended
# before the page had seen its curve grow twice) to be watched while it runs, short enough for the suite.
SPEC = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [32]},
    "optimizer": {"name": "adam", "lr": 0.003},
    "training": {"epochs": 12, "batch_size": 2, "seed": 3},
}
# A GAN on the ring, a fraction of a second per epoch: enough epochs to watch its samples move.
RING_GAN = {
    "dataset": {"name": "gaussian-ring"},
    "model": {"arch": "gan", "generator": {"hidden_sizes": [32]}, "discriminator": {"hidden_sizes": [32]}},
    "training": {"epochs": 25, "batch_size": 8, "seed": 1},
}
DIGITS_GAN = {
    "dataset": {"name": "digits"},
    "model": {"arch": "gan", "generator": {"hidden_sizes": [32]}, "discriminator": {"hidden_sizes": [32]}},
    "training": {"epochs": 2, "batch_size": 64},
}
# Three short runs that differ in the learning rate; the third warms up over 20 steps, then decays (cosine).
COMPARED = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [8]},
    "training": {"epochs": 3},
}
COMPARED_OPTIMIZERS = [
    {"name": "sgd", "lr": 0.1},
    {"name": "sgd", "lr": 0.01},
    {"name": "sgd", "lr": 0.05, "warmup_steps": 20, "schedule": {"kind": "cosine"}},
]
# A name without spaces, too long for a column: it must wrap rather than widen the page.
COMPARED_NAMES = ["lr-0.1", "lr-0.01", "moons-sgd-lr-0.05-warmup-20-steps-cosine-decay-" + "x" * 40]
# Momentum at a learning rate of 10: NaN within a few steps, failed as diverged in about a second.
DIVERGING = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [512, 512]},
    "optimizer": {"name": "momentum", "lr": 10},
    "training": {"epochs": 3},
}
# The same run allowed to stay non-finite: it ends with NaN epoch metrics, which the pages must show as text.
STAYS_NAN = DIVERGING | {
    "training": {"epochs": 2, "max_nonfinite_steps": 10_000, "divergence_factor": 1e12},
}
# Each compare chart: its metric, its y scale as uPlot holds it, its series and the values it draws.
CHARTS = """() => [...document.querySelectorAll("#compare-charts .chart")].map((element) => {
  const plot = element.nnforgeChart.plot;
  return {
    metric: element.dataset.metric, scale: element.dataset.scale, distr: plot.scales.y.distr,
    series: plot.series.slice(1).map((s) => s.label), data: plot.data.slice(1),
  };
})"""
SET_SMOOTHING = """(value) => {
  const slider = document.getElementById("compare-smoothing");
  slider.value = value;
  slider.dispatchEvent(new Event("input"));
}"""
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
# Pixels of the samples canvas: generated points are drawn in red (#d62728), image pixels in grey levels.
COUNT_PIXELS = """(kind) => {
  const canvas = document.getElementById("samples-canvas");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
    if (kind === "red" ? r > 180 && g < 90 && b < 90 : r < 128 && r === g && g === b) count++;
  }
  return count;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")  # fails in CI
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught exceptions of the page's scripts: every test ends with none."""
    return []


@pytest.fixture
def page(browser, live_stack: LiveStack, page_errors: list[str]):  # type: ignore[no-untyped-def]
    context = browser.new_context(
        base_url=live_stack.url, accept_downloads=True, viewport={"width": 1400, "height": 1100}
    )
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto("/ui")
    page.fill("#token-input", live_stack.token)  # entered once, kept by the browser
    page.click("#token-form button")
    page.wait_for_selector("#token-state:has-text('token saved')")
    yield page
    context.close()
    assert not page_errors, page_errors


def _debiased_ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing, which the compare page follows."""
    mean, out = 0.0, []
    for i, value in enumerate(values, start=1):
        mean = weight * mean + (1 - weight) * value
        out.append(mean / (1 - weight**i))
    return out


def _best_cell(page, job_id: str) -> tuple[str, float, int]:  # type: ignore[no-untyped-def]
    """The jobs list's "best" of a job, "val_accuracy 0.825 · epoch 2", as (metric, value, epoch)."""
    cell = f"#jobs tr[data-job-id='{job_id}'] td:nth-child(8)"
    page.wait_for_selector(cell)
    metric, value, epoch = page.text_content(cell).replace(" · epoch", "").split(" ")
    return metric, float(value), int(epoch)


def _plotted(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.get_attribute("#chart-steps", "data-points") or 0)


def test_dashboard_submits_a_job_plots_it_live_and_downloads_a_checkpoint(
    page, live_stack: LiveStack, tmp_path: Path
) -> None:
    page.goto("/ui/submit")
    page.select_option("#submit-template", "mlp")
    page.fill("#submit-spec", json.dumps(SPEC))
    page.fill("#submit-name", "browser-run")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url("**/ui/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]

    # While it runs, the per-step curve gains points: observe at least two growing counts mid-run.
    page.wait_for_selector("#job-status:has-text('running')", timeout=120_000)
    seen: list[int] = []

    def grew() -> bool:
        if page.text_content("#job-status") == "running":
            count = _plotted(page)
            if not seen or count > seen[-1]:
                seen.append(count)
        return len([c for c in seen if c > 0]) >= 2

    wait_for(grew, timeout=120, interval=0.3, what=f"the plotted points to grow (seen {seen})")
    page.wait_for_selector("body[data-ended]", timeout=180_000)
    assert page.get_attribute("body", "data-ended") == "succeeded", live_stack.logs()
    assert page.text_content("#job-status") == "succeeded"
    job = Client(live_stack.url, live_stack.token).job(job_id)
    total_steps = job.data["progress"]["total_steps"]
    page.wait_for_function(f"document.getElementById('chart-steps').dataset.points >= {total_steps}")
    assert int(page.get_attribute("#chart-loss", "data-points") or 0) == 2 * 12  # train and val, each epoch

    page.wait_for_selector("#checkpoints button.download")
    with page.expect_download() as download:
        page.click("#checkpoints tbody tr:last-child button[data-format=pt]")
    saved = tmp_path / "from-browser.pt"
    download.value.save_as(saved)
    assert torch.load(saved, weights_only=True)["progress"]["epoch"] == 12
    page.wait_for_function("document.getElementById('job-log').textContent.includes('epoch 12/12')")
    assert page.is_hidden("#samples")  # a classifier generates nothing

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)

    page.goto("/ui")
    page.wait_for_selector(f"#jobs tr[data-job-id='{job_id}']")
    assert "succeeded" in page.text_content(f"#jobs tr[data-job-id='{job_id}']")


def test_compare_page_charts_chosen_metrics_on_log_scale_smoothed_and_lists_what_differs(
    page, live_stack: LiveStack
) -> None:
    client = Client(live_stack.url, live_stack.token)
    submitted = [
        client.submit({**COMPARED, "optimizer": optimizer}, name=name)
        for name, optimizer in zip(COMPARED_NAMES, COMPARED_OPTIMIZERS, strict=True)
    ]
    jobs = [job.wait() for job in submitted]
    assert [job.status for job in jobs] == ["succeeded"] * 3, live_stack.logs()

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/ui/compare?ids={','.join(job.id for job in jobs)}")
    # By default the jobs' objective and the validation loss, one chart each, three runs on each.
    page.wait_for_selector("#compare-charts .chart[data-metric='val_loss'][data-points='9']")
    assert [c["metric"] for c in page.evaluate(CHARTS)] == ["val_accuracy", "val_loss"]

    page.uncheck("#compare-metrics input[value='val_accuracy']")
    page.check("#compare-metrics input[value='train_loss']")
    page.wait_for_selector("#compare-charts .chart[data-metric='train_loss'][data-points='9']")
    charts = page.evaluate(CHARTS)
    assert [c["metric"] for c in charts] == ["train_loss", "val_loss"]
    for chart in charts:
        assert chart["series"] == COMPARED_NAMES
        assert all(len(ys) == 3 and all(y > 0 for y in ys) for ys in chart["data"]), chart
        assert chart["distr"] == 1 and chart["scale"] == "linear"
    assert "metrics=train_loss,val_loss&" in page.url  # the view can be shared

    page.check("#compare-log")
    assert [(c["distr"], c["scale"]) for c in page.evaluate(CHARTS)] == [(3, "log")] * 2
    page.uncheck("#compare-log")
    assert [c["distr"] for c in page.evaluate(CHARTS)] == [1, 1]

    raw = page.evaluate(CHARTS)[1]["data"]
    page.evaluate(SET_SMOOTHING, "0.9")
    smoothed = page.evaluate(CHARTS)[1]["data"]
    assert smoothed != raw
    assert smoothed == [pytest.approx(_debiased_ema(ys, 0.9)) for ys in raw]
    page.evaluate(SET_SMOOTHING, "0")
    assert page.evaluate(CHARTS)[1]["data"] == raw

    # Rows equal across the jobs are hidden until "only what differs" is unticked; the results always show.
    same, differs = "#compare-spec tr[data-key='dataset.name']", "#compare-spec tr[data-key='optimizer.lr']"
    assert page.is_hidden(same) and page.is_visible(differs)
    assert page.locator(f"{differs} td.differs").all_text_contents() == ["0.1", "0.01", "0.05"]
    assert (
        page.locator("#compare-results tr[data-key='objective'] td").all_text_contents()[1:]
        == ["val_accuracy (higher is better)"] * 3
    )
    best_test = page.locator("#compare-results tr[data-key='best checkpoint test_accuracy'] td")
    assert [float(v) for v in best_test.all_text_contents()[1:]] == [
        pytest.approx(job.data["best_test_metrics"]["test_accuracy"], abs=5e-4) for job in jobs
    ]
    assert page.locator("#compare-results tr[data-key='best epoch'] td").all_text_contents()[1:] == [
        str(job.data["best_epoch"]) for job in jobs
    ]
    page.uncheck("#compare-only-differs")
    assert page.is_visible(same) and page.is_visible(differs)

    # Nothing widens the page at 1,280 px: the long name wraps in the table and in the legends.
    assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate("document.documentElement.scrollWidth")
    page.check("#compare-only-differs")
    page.screenshot(path="/tmp/dashboard-compare-1280.png", full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)

    # The warmed-up, cosine-decayed run: its learning rate rises for 20 steps, then falls, in its own chart.
    warmed = jobs[2]
    page.goto(f"/ui/jobs/{warmed.id}")
    steps = warmed.data["progress"]["total_steps"]
    page.wait_for_selector(f"#chart-lr[data-points='{steps}']")
    (lr,) = page.evaluate("document.getElementById('chart-lr').nnforgeChart.plot.data.slice(1)")
    assert lr[0] == pytest.approx(0.05 / 20) and max(lr) == pytest.approx(0.05) == lr[19]
    assert lr[-1] < lr[19] / 2
    labels = page.evaluate(
        "document.getElementById('chart-steps').nnforgeChart.plot.series.slice(1).map((s) => s.label)"
    )
    assert labels == ["accuracy", "loss"]
    # The summary: the objective at the best epoch, the best checkpoint's test score beside the last epoch's.
    best_epoch = warmed.data["best_epoch"]
    assert f"best epoch {best_epoch}: " in page.text_content("#job-objective")
    test_row = page.locator("#job-scores tr[data-metric='test_accuracy'] td").all_text_contents()
    assert [float(v) for v in test_row[1:]] == [
        pytest.approx(warmed.data["latest_metrics"]["test_accuracy"], abs=5e-4),
        pytest.approx(warmed.data["best_test_metrics"]["test_accuracy"], abs=5e-4),
    ]
    assert page.text_content("#job-scores th:nth-child(3)") == f"best epoch ({best_epoch})"
    assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(ARTIFACTS / "dashboard-job-lr.png"), full_page=True)

    # The jobs list's "best" is the objective at the best epoch.
    page.goto("/ui")
    assert _best_cell(page, warmed.id) == (
        "val_accuracy",
        pytest.approx(warmed.data["best_metrics"]["val_accuracy"], abs=5e-4),
        best_epoch,
    )


def test_diverged_job_shows_its_error_and_non_finite_values_as_gaps(
    page, live_stack: LiveStack, page_errors: list[str]
) -> None:
    client = Client(live_stack.url, live_stack.token)
    submitted = client.submit(DIVERGING, name="diverging"), client.submit(STAYS_NAN, name="stays-nan")
    job, nan_job = (handle.wait() for handle in submitted)
    assert job.data["error"]["type"] == "diverged", job.data
    assert nan_job.data["latest_metrics"]["val_loss"] == "NaN", nan_job.data
    loss = job.metrics(["loss"])["loss"]
    first_bad = next(p["step"] for p in loss if not math.isfinite(float(p["value"])))

    page.goto(f"/ui/jobs/{job.id}")
    page.wait_for_selector("body[data-ended]")
    page.wait_for_selector(f"#chart-steps[data-nonfinite='{first_bad}']")
    assert page.text_content("#job-error").startswith("diverged: the training loss")
    assert f"loss: non-finite from step {first_bad}" in page.text_content("#chart-steps .chart-note")
    drawn = page.evaluate("document.getElementById('chart-steps').nnforgeChart.plot.data[2]")
    assert drawn[-1] is None  # a gap, not a zero or a line to the axis
    assert page.text_content("#job-objective").endswith("best epoch none yet")
    page.check("#steps-log")  # the finite climb before the NaN, readable on a log scale
    assert page.get_attribute("#chart-steps", "data-scale") == "log"
    assert page.get_attribute("#chart-steps", "data-nonfinite") == str(first_bad)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-job-diverged.png"), full_page=True)

    # NaN epoch metrics (latest, best and the best checkpoint's test score) read as text, and as gaps.
    page.goto(f"/ui/jobs/{nan_job.id}")
    page.wait_for_selector("body[data-ended]")
    page.wait_for_selector("#job-scores tr[data-metric='test_loss']")
    cells = page.locator("#job-scores tr[data-metric='val_loss'] td").all_text_contents()
    assert cells == ["val_loss", "NaN", "NaN"]
    assert page.locator("#job-scores tr[data-metric='test_loss'] td").all_text_contents()[2] == "NaN"
    assert page.get_attribute("#chart-loss", "data-nonfinite") == "1"

    page.goto("/ui")
    assert _best_cell(page, nan_job.id) == (
        "val_accuracy",
        pytest.approx(nan_job.data["best_metrics"]["val_accuracy"], abs=5e-4),
        1,
    )
    assert page.text_content(f"#jobs tr[data-job-id='{job.id}'] td:nth-child(8)") == "val_accuracy —"
    page.goto(f"/ui/compare?ids={job.id},{nan_job.id}&metrics=loss,val_loss")
    page.wait_for_selector(f"#compare-charts .chart[data-metric='loss'][data-nonfinite='{first_bad}']")
    page.wait_for_selector("#compare-charts .chart[data-metric='val_loss'][data-nonfinite='1']")
    assert page.locator(
        "#compare-results tr[data-key='best checkpoint test_loss'] td"
    ).all_text_contents() == [
        "best checkpoint test_loss",
        "—",
        "NaN",
    ]
    assert page.is_hidden("#error") and page_errors == []


def test_gan_job_page_redraws_generated_samples_each_epoch(page, live_stack: LiveStack) -> None:
    client = Client(live_stack.url, live_stack.token)
    job = client.submit(RING_GAN, name="ring-gan")
    page.goto(f"/ui/jobs/{job.id}")
    page.wait_for_selector("#job-status:has-text('running')", timeout=120_000)

    # While it runs, the scatter is redrawn with newer epochs: see at least two of them mid-run.
    epochs: list[int] = []

    def redrawn() -> bool:
        if page.text_content("#job-status") == "running":
            epoch = int(page.get_attribute("#samples-canvas", "data-epoch") or 0)
            if epoch and (not epochs or epoch > epochs[-1]):
                epochs.append(epoch)
        return len(epochs) >= 2

    wait_for(redrawn, timeout=120, interval=0.3, what=f"the samples to be redrawn (seen epochs {epochs})")
    page.wait_for_selector("body[data-ended]", timeout=180_000)
    assert page.get_attribute("body", "data-ended") == "succeeded", live_stack.logs()
    page.wait_for_selector("#samples-canvas[data-epoch='25']")
    assert page.get_attribute("#samples-canvas", "data-points") == "256"
    assert page.evaluate(COUNT_PIXELS, "red") > 256  # the dots are on the canvas, not only counted
    assert "over 512 real points" in page.text_content("#samples-caption")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-gan-samples.png"), full_page=True)


def test_image_gan_job_page_draws_an_image_grid(page, live_stack: LiveStack) -> None:
    job = Client(live_stack.url, live_stack.token).submit(DIGITS_GAN, name="digits-gan").wait()
    assert job.status == "succeeded"
    page.goto(f"/ui/jobs/{job.id}")
    page.wait_for_selector("#samples-canvas[data-epoch='2']")
    assert page.get_attribute("#samples-canvas", "data-images") == "16"
    assert page.evaluate(COUNT_PIXELS, "grey") > 16 * 64  # dark pixels of 16 8×8 digits, drawn enlarged
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-gan-images.png"), full_page=True)
