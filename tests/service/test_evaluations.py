"""Evaluations through the real service: a classifier's report appears when it succeeds; robustness and
attribution run on the worker through the API, the CLI and the client; only the owner sees them; bad
requests are 422s naming the field; the job page draws the report and the robustness curve."""

import json
import uuid
from typing import Any

import httpx2
import pytest
from conftest import new_token
from live_stack import LiveStack
from support import wait_for
from test_cli_remote import _nnforge
from test_dashboard import ARTIFACTS, browser, page, page_errors  # noqa: F401  (fixtures)

from app.client.client import Client

# A small CNN on digits: a few seconds of training, well above chance, attacked in seconds.
DIGITS_CNN = {
    "dataset": {"name": "digits"},
    "model": {"arch": "cnn", "conv_blocks": [{"channels": 8}], "hidden_sizes": [32]},
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 4, "batch_size": 64, "seed": 0},
}
TIMEOUT = 180


def _http(stack: LiveStack, token: str | None = None) -> httpx2.Client:
    return httpx2.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {token or stack.token}"}, timeout=30
    )


@pytest.fixture(scope="module")
def cnn_job(live_stack: LiveStack) -> dict[str, Any]:
    job = Client(live_stack.url, live_stack.token).submit(DIGITS_CNN, name="evaluated-cnn").wait()
    assert job.status == "succeeded", live_stack.logs()
    return job.data


@pytest.fixture(scope="module")
def robustness(live_stack: LiveStack, cnn_job: dict[str, Any]) -> dict[str, Any]:
    """A robustness evaluation asked for with `nnforge evaluate`, waited for, printed as JSON."""
    run = _nnforge(
        live_stack, "evaluate", cnn_job["id"][:8], "--kind", "robustness", "--epsilons", "0,0.1,0.3,0.6",
        "--samples", "128", "--steps", "5", "-o", "json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + live_stack.logs()
    return dict(json.loads(run.stdout))


def test_a_classifier_gets_its_report_when_it_succeeds(
    live_stack: LiveStack, cnn_job: dict[str, Any]
) -> None:
    http = _http(live_stack)
    path = f"/v1/jobs/{cnn_job['id']}/evaluations"
    reports = wait_for(
        lambda: [e for e in http.get(path).json()["items"] if e["status"] == "succeeded"],
        timeout=60,
        what="the report",
    )
    report = reports[0]
    assert (report["kind"], report["split"], report["params"]) == ("report", "test", {"seeds": 5})
    best = http.get(f"/v1/jobs/{cnn_job['id']}/checkpoints").json()
    assert report["checkpoint_id"] in [c["id"] for c in best if c["epoch"] == cnn_job["best_epoch"]]
    result = report["result"]
    matrix = result["confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == result["samples"] == sum(c["support"] for c in result["per_class"])
    diagonal = sum(matrix[i][i] for i in range(10))
    assert result["accuracy"] == pytest.approx(diagonal / result["samples"])
    # The same weights and split the job's own test score came from: the same accuracy.
    assert result["accuracy"] == pytest.approx(cnn_job["best_test_metrics"]["test_accuracy"])
    assert len(result["reliability"]) == 15 and 0 <= result["ece"] <= 1
    assert http.get(f"{path}/{report['id']}").json() == report


def test_robustness_through_the_cli_and_attribution_through_the_client(
    live_stack: LiveStack, cnn_job: dict[str, Any], robustness: dict[str, Any]
) -> None:
    assert robustness["status"] == "succeeded", robustness["error"]
    points = robustness["result"]["points"]
    epsilons = [0.0, 0.1, 0.3, 0.6]
    assert [(p["attack"], p["epsilon"]) for p in points] == [
        (a, e) for a in ("fgsm", "pgd") for e in epsilons
    ]
    fgsm, pgd = ([p["accuracy"] for p in points if p["attack"] == a] for a in ("fgsm", "pgd"))
    assert fgsm[0] == pgd[0] == robustness["result"]["clean_accuracy"] > 0.8
    assert all(p <= f for f, p in zip(fgsm, pgd, strict=True)) and pgd[-1] < pgd[0]

    job = Client(live_stack.url, live_stack.token).job(cnn_job["id"])
    attribution = job.evaluate("attribution", samples=4)
    assert attribution["status"] == "succeeded", attribution["error"]
    result = attribution["result"]
    assert result["layout"] == "images" and len(result["items"]) == 4
    assert all(len(item["integrated_gradients"]) == 8 for item in result["items"])
    assert [e["kind"] for e in job.evaluations()][-2:] == ["robustness", "attribution"]


def test_an_idempotent_post_answers_202_with_its_location_once(
    live_stack: LiveStack, cnn_job: dict[str, Any]
) -> None:
    http = _http(live_stack)
    path = f"/v1/jobs/{cnn_job['id']}/evaluations"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"kind": "attribution", "checkpoint": "latest", "split": "val", "params": {"samples": 2}}
    first, again = (http.post(path, json=body, headers=key) for _ in range(2))
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert first.headers["Location"] == f"{path}/{first.json()['id']}" == again.headers["Location"]
    assert [e["id"] for e in http.get(path).json()["items"]].count(first.json()["id"]) == 1
    stored = http.get(first.headers["Location"]).json()
    assert (stored["split"], stored["params"]) == ("val", {"samples": 2, "ig_steps": 128})
    # The same key with another body is refused, naming the header.
    other = http.post(path, json={**body, "split": "test"}, headers=key)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"


def test_another_owner_sees_no_evaluation(live_stack: LiveStack, cnn_job: dict[str, Any]) -> None:
    mine = _http(live_stack).get(f"/v1/jobs/{cnn_job['id']}/evaluations").json()["items"][0]
    other = _http(live_stack, new_token(live_stack.settings, f"other-{uuid.uuid4().hex[:6]}"))
    path = f"/v1/jobs/{cnn_job['id']}/evaluations"
    assert other.get(path).status_code == 404
    assert other.get(f"{path}/{mine['id']}").status_code == 404
    assert other.post(path, json={"kind": "report"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "verdict"}, "kind"),
        ({"kind": "robustness", "params": {"epsilons": [0, 50]}}, "params.epsilons.1"),
        ({"kind": "robustness", "params": {"epsilons": [0.1] * 17}}, "params.epsilons"),
        ({"kind": "robustness", "params": {"samples": 100_000}}, "params.samples"),
        ({"kind": "robustness", "params": {"steps": 0}}, "params.steps"),
        ({"kind": "attribution", "params": {"samples": 65}}, "params.samples"),
        ({"kind": "attribution", "params": {"baseline": "zeros"}}, "params.baseline"),
        ({"kind": "report", "split": "holdout"}, "split"),
        ({"kind": "report", "checkpoint": "first"}, "checkpoint"),
    ],
)
def test_a_bad_kind_or_parameter_is_a_422_naming_the_field(
    live_stack: LiveStack, cnn_job: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    response = _http(live_stack).post(f"/v1/jobs/{cnn_job['id']}/evaluations", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


def test_a_checkpoint_the_job_lacks_is_a_409(live_stack: LiveStack, cnn_job: dict[str, Any]) -> None:
    response = _http(live_stack).post(
        f"/v1/jobs/{cnn_job['id']}/evaluations", json={"kind": "report", "checkpoint": "2147483000"}
    )
    assert response.status_code == 409 and "2147483000" in response.json()["detail"]


def test_the_job_page_draws_the_confusion_matrix_and_the_robustness_curve(
    page,  # noqa: F811  (a fixture)
    live_stack: LiveStack,
    cnn_job: dict[str, Any],
    robustness: dict[str, Any],
) -> None:
    items = _http(live_stack).get(f"/v1/jobs/{cnn_job['id']}/evaluations").json()["items"]
    report = [e for e in items if e["kind"] == "report" and e["status"] == "succeeded"][-1]  # the newest
    page.goto(f"/ui/jobs/{cnn_job['id']}")
    page.wait_for_selector("#eval-confusion td[data-count]")
    cells = page.eval_on_selector_all(
        "#eval-confusion td[data-count]", "cells => cells.map(c => +c.dataset.count)"
    )
    assert cells == [count for row in report["result"]["confusion_matrix"] for count in row]
    assert page.locator("#eval-per-class tbody tr").count() == 10
    assert int(page.get_attribute("#eval-reliability", "data-bars") or 0) > 0
    page.wait_for_selector("#eval-robustness")
    points = len(robustness["result"]["points"])
    assert int(page.get_attribute("#eval-robustness", "data-points") or 0) == points
    assert page.locator("#eval-robustness polyline").count() == 2  # FGSM and PGD
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-evaluations.png"), full_page=True)
