"""The jobs page in a real Chromium against the live API: filters kept in the URL, sorts and pages as the
API answers, tags edited and jobs deleted through the page, the owner's storage. Its jobs are rows written
straight into the database for an owner of its own (no other test's jobs show), plus one real job that
is still queued or running when the page tries to delete it."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from conftest import new_token
from job_rows import insert, job_row
from live_stack import LiveStack
from support import wait_for
from test_dashboard import ARTIFACTS, NO_SIDEWAYS_SCROLL, browser  # noqa: F401  (browser: a fixture)

from app.client.client import Client

PAGE = 5
OBJECTIVE = {"metric": "val_accuracy", "mode": "max"}
# A name without spaces, longer than its column: it wraps in its cell instead of widening the page.
LONG_NAME = "sweep-resnet-ish-mlp-" + "x" * 100
# Long enough that it is still queued or running when the page tries to delete it; cancelled at the end.
RUNNING = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [32]},
    "training": {"epochs": 200, "batch_size": 2},
}
ROW_IDS = "() => [...document.querySelectorAll('#jobs tbody tr')].map((row) => row.dataset.jobId)"
SHOWS_IDS = f"(ids) => ({ROW_IDS})().join() === ids.join()"


def _si(count: int) -> str:
    """The page's byte figures: decimal units, three significant digits ("12.3 MB", "1 GB")."""
    units, value, unit = ["B", "kB", "MB", "GB", "TB", "PB"], float(count), 0
    while abs(value) >= 999.5 and unit < len(units) - 1:
        value, unit = value / 1000, unit + 1
    return f"{float(f'{value:.3g}'):g} {units[unit]}"


def _rows(owner: str) -> list[dict[str, Any]]:
    """Twelve finished jobs a minute apart: every other one tagged sweep, two baseline, an sgd in three,
    each with its own best val_accuracy but one, which never reported it."""
    rows = []
    for i in range(12):
        tags = (["sweep"] if i % 2 == 0 else []) + (["baseline"] if i in (1, 4) else [])
        accuracy = {} if i == 7 else {"val_accuracy": round(0.5 + (i * 5 % 12) / 30, 4)}
        row = job_row(
            owner,
            i,
            name=LONG_NAME if i == 11 else f"run-{i:02d}",
            tags=tags + (["lr=0.01", "team/vision", "seed:3"] if i == 11 else []),
            notes="the first of the sweep" if i == 0 else None,
            optimizer="sgd" if i % 3 == 0 else "adam",
            best_metrics={**accuracy, "val_loss": 1 - i / 20},
            best_epoch=2,
            status="failed" if i == 5 else "succeeded",
        )
        row["spec"]["training"]["objective"] = OBJECTIVE
        rows.append(row)
    return rows


@pytest.fixture
def owner_api(live_stack: LiveStack) -> Iterator[httpx2.Client]:
    """The API as an owner of the test's own, whose jobs are the twelve rows."""
    owner = f"jobs-page-{uuid.uuid4().hex[:6]}"
    token = new_token(live_stack.settings, owner)
    insert(live_stack.settings.resolved_database_url, _rows(owner))
    with httpx2.Client(base_url=live_stack.url, headers={"Authorization": f"Bearer {token}"}) as api:
        yield api


@pytest.fixture
def jobs_page(browser, live_stack: LiveStack, owner_api: httpx2.Client):  # type: ignore[no-untyped-def]  # noqa: F811
    """A 1,280 px wide page that holds the owner's token already; it ends with no uncaught page error."""
    context = browser.new_context(base_url=live_stack.url, viewport={"width": 1280, "height": 900})
    token = owner_api.headers["Authorization"].removeprefix("Bearer ")
    context.add_init_script(f"localStorage.setItem('nnforge.token', {json.dumps(token)})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def _api_ids(api: httpx2.Client, **params: Any) -> tuple[list[str], str | None]:
    answer = api.get("/v1/jobs", params={"limit": PAGE, **params})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [job["id"] for job in body["items"]], body["next_cursor"]


def _shows(page, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(SHOWS_IDS, arg=ids)


def test_jobs_page_filters_sorts_pages_edits_and_deletes_through_the_api(
    jobs_page, owner_api: httpx2.Client, live_stack: LiveStack
) -> None:
    page = jobs_page
    page.goto(f"/ui?limit={PAGE}")

    # Paging: pages of PAGE jobs, the API's own, through its cursors; previous comes back to the first.
    first, cursor = _api_ids(owner_api)
    second, cursor = _api_ids(owner_api, cursor=cursor)
    third, end = _api_ids(owner_api, cursor=cursor)
    assert (len(first), len(second), len(third), end) == (PAGE, PAGE, 2, None)
    _shows(page, first)
    assert page.is_disabled("#page-prev")
    page.click("#page-next")
    _shows(page, second)
    assert not set(first) & set(second)
    page.click("#page-next")
    _shows(page, third)
    assert page.text_content("#page-info") == "page 3 · jobs 11–12" and page.is_disabled("#page-next")
    page.click("#page-prev")
    _shows(page, second)
    page.click("#page-prev")
    _shows(page, first)
    assert page.text_content("#page-info") == "page 1 · jobs 1–5" and page.is_disabled("#page-prev")

    # The storage line is /v1/usage's total (no limit on this service; a limit read as "of 1 GB").
    usage = owner_api.get("/v1/usage").json()
    storage = "#storage-total"
    assert page.text_content(storage) == f"Storage: {_si(usage['total_bytes'])}, no limit"
    assert page.get_attribute(storage, "data-bytes") == str(usage["total_bytes"])
    assert "12 jobs" in page.text_content("#storage-detail")
    page.route(
        "**/v1/usage",
        lambda route: route.fulfill(response=route.fetch(), json={**usage, "limit_bytes": 10**9}),
    )
    page.reload()
    page.wait_for_selector(f"{storage}:has-text('of 1 GB')")
    assert page.text_content(storage) == f"Storage: {_si(usage['total_bytes'])} of 1 GB"
    page.unroute("**/v1/usage")

    # Nothing widens the page at 1,280 px: the long name and its tags wrap in their cell.
    page.goto("/ui")
    _shows(page, _api_ids(owner_api, limit=50)[0])
    assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path="/tmp/dashboard-jobs-1280.png", full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-jobs.png"), full_page=True)

    # A tag filter: only the tagged jobs, their chips shown, the filter in the URL and kept on reload.
    page.goto(f"/ui?limit={PAGE}")
    page.fill("#filter-tag", "sweep")
    page.press("#filter-tag", "Enter")
    sweep, _ = _api_ids(owner_api, tag="sweep")
    _shows(page, sweep)
    assert "tag=sweep" in page.url
    for job_id in sweep:
        assert "sweep" in page.locator(f"#jobs tr[data-job-id='{job_id}'] a.tag").all_text_contents()
    page.reload()
    _shows(page, sweep)
    assert page.input_value("#filter-tag") == "sweep"
    # A chip adds its tag to the filter: jobs tagged both.
    page.click("#jobs a.tag:text-is('baseline')")
    both, _ = _api_ids(owner_api, tag=["sweep", "baseline"])
    _shows(page, both)
    assert len(both) == 1 and "tag=sweep&tag=baseline" in page.url

    # Sorting by the objective's best value, best first, then lowest first: the API's order.
    page.click("#filters-clear")
    _shows(page, first)
    page.select_option("#sort-key", "best")
    assert page.input_value("#sort-metric") == "val_accuracy"
    by_best, _ = _api_ids(owner_api, sort="-best.val_accuracy")
    _shows(page, by_best)
    assert "sort=-best.val_accuracy" in page.url
    shown = [float(text.split(" ")[1]) for text in page.locator("#jobs td.best").all_text_contents()]
    assert shown == sorted(shown, reverse=True)
    page.select_option("#sort-order", "")
    _shows(page, _api_ids(owner_api, sort="best.val_accuracy")[0])
    assert "sort=best.val_accuracy" in page.url

    # Editing: the name, the notes and the tags change in the API; a bad tag shows the 422's field and
    # reason beside the input and changes nothing.
    page.goto(f"/ui?limit={PAGE}")
    edited = first[0]
    before = owner_api.get(f"/v1/jobs/{edited}").json()
    page.click(f"#jobs tr[data-job-id='{edited}'] button[data-action=edit]")
    page.fill("#edit-name", "renamed")
    page.fill("#edit-tags", "keep team/vision")
    page.fill("#edit-notes", "two\nlines")
    page.click("#edit-form button[type=submit]")
    page.wait_for_selector("#edit-dialog", state="hidden")
    after = owner_api.get(f"/v1/jobs/{edited}").json()
    assert after["name"] == "renamed" and after["notes"] == "two\nlines"
    # Sent as changes: lr=0.01 and seed:3 removed, keep added after the tag kept.
    assert before["tags"] == ["lr=0.01", "team/vision", "seed:3"]
    assert after["tags"] == ["team/vision", "keep"]
    page.wait_for_selector(f"#jobs tr[data-job-id='{edited}'] a.tag:text-is('team/vision')")

    bad = {"add_tags": ["bad!tag"]}
    refused = owner_api.patch(f"/v1/jobs/{edited}", json=bad)
    assert refused.status_code == 422
    (issue,) = refused.json()["errors"]
    page.click(f"#jobs tr[data-job-id='{edited}'] button[data-action=edit]")
    page.fill("#edit-tags", "keep team/vision bad!tag")
    page.click("#edit-form button[type=submit]")
    page.wait_for_selector(".field-error[data-for=tags]:not(:empty)")
    assert page.text_content(".field-error[data-for=tags]") == f'add_tags.0 "bad!tag": {issue["reason"]}'
    assert page.is_visible("#edit-dialog")
    assert owner_api.get(f"/v1/jobs/{edited}").json()["tags"] == ["team/vision", "keep"]
    page.click("#edit-cancel")

    # Deleting asks first: dismissed, the job stays; accepted, it is gone and the storage line shrinks.
    doomed = first[1]
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click(f"#jobs tr[data-job-id='{doomed}'] button[data-action=delete]")
    wait_for(lambda: asked, timeout=10, what="the confirmation")
    assert doomed in asked[0] and owner_api.get(f"/v1/jobs/{doomed}").status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"#jobs tr[data-job-id='{doomed}'] button[data-action=delete]")
    page.wait_for_selector(f"#jobs tr[data-job-id='{doomed}']", state="detached")
    assert owner_api.get(f"/v1/jobs/{doomed}").status_code == 404
    assert page.text_content("#jobs-notice").startswith("Deleted ")
    smaller = owner_api.get("/v1/usage").json()["total_bytes"]
    assert smaller < usage["total_bytes"]
    page.wait_for_selector(f"{storage}[data-bytes='{smaller}']")

    # The compare selection outlives paging: one job ticked on each page, then compared.
    page.check(f"#jobs tr[data-job-id='{first[2]}'] input[type=checkbox]")
    page.click("#page-next")
    _shows(page, _api_ids(owner_api, cursor=_api_ids(owner_api)[1])[0])
    ticked = page.evaluate(ROW_IDS)[0]
    page.check(f"#jobs tr[data-job-id='{ticked}'] input[type=checkbox]")
    assert page.text_content("#compare-selected") == "Compare selected (2)"
    page.click("#compare-selected")
    page.wait_for_url(f"**/ui/compare?ids={first[2]},{ticked}")

    # A queued or running job: the 409 says to cancel it first, and the job stays.
    running = Client(live_stack.url, owner_api.headers["Authorization"].removeprefix("Bearer ")).submit(
        RUNNING, name="still-running"
    )
    try:
        page.goto("/ui?name=still-running")
        _shows(page, [running.id])
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f"#jobs tr[data-job-id='{running.id}'] button[data-action=delete]")
        page.wait_for_selector("#jobs-notice.error:not([hidden])")
        assert "cancel it first" in page.text_content("#jobs-notice")
        assert owner_api.get(f"/v1/jobs/{running.id}").json()["status"] in ("queued", "running")
    finally:
        assert running.cancel().wait().status == "cancelled", live_stack.logs()
