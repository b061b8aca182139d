"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real API server and
Celery worker: submit from the form, watch the curves grow, see the end, download, compare."""

import json
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
def page(browser, live_stack: LiveStack):  # type: ignore[no-untyped-def]
    context = browser.new_context(
        base_url=live_stack.url, accept_downloads=True, viewport={"width": 1400, "height": 1100}
    )
    page = context.new_page()
    page.goto("/ui")
    page.fill("#token-input", live_stack.token)  # entered once, kept by the browser
    page.click("#token-form button")
    page.wait_for_selector("#token-state:has-text('token saved')")
    yield page
    context.close()


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


def test_compare_page_overlays_two_jobs_and_marks_differing_hyperparameters(
    page, live_stack: LiveStack
) -> None:
    client = Client(live_stack.url, live_stack.token)
    small = {
        "dataset": {"name": "moons"},
        "model": {"arch": "mlp", "hidden_sizes": [8]},
        "training": {"epochs": 3},
    }
    jobs = [
        client.submit({**small, "optimizer": {"name": "sgd", "lr": lr}}, name=f"lr-{lr}").wait()
        for lr in (0.1, 0.01)
    ]
    assert [job.status for job in jobs] == ["succeeded", "succeeded"]

    page.goto(f"/ui/compare?ids={jobs[0].id},{jobs[1].id}")
    page.wait_for_function("document.getElementById('chart-compare').dataset.points == '6'")
    differing = page.locator("#compare-params td.differs").all_text_contents()
    assert {"0.1", "0.01"} <= set(differing)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)


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
