"""init_from end to end: a real worker trains children from their parent's checkpoint, submitted by the
Python client and by `nnforge submit --from`; `nnforge lineage` draws the tree and the dashboard links them,
and its submit page starts a job from another."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import Result
from live_stack import LiveStack
from test_dashboard import ARTIFACTS, browser, page, page_errors  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from app.client.cli import cli
from app.client.client import Client
from models.checkpoint import read_checkpoint

MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [8]},
    "training": {"epochs": 2, "seed": 1, "batch_size": 128},
}


def _nnforge(stack: LiveStack, *args: str) -> Result:
    """The CLI in this process (a subprocess would add seconds of imports; test_cli_remote runs those)."""
    env = {"NNFORGE_URL": stack.url, "NNFORGE_TOKEN": stack.token, "HOME": "/nonexistent", "COLUMNS": "200"}
    return CliRunner().invoke(cli, list(args), env=env)


def _weights(client: Client, job_id: str, which: str, folder: Path) -> dict[str, torch.Tensor]:
    path = client.job(job_id).download(folder / f"{job_id}-{which}.pt", checkpoint=which)
    return dict(read_checkpoint(path.read_bytes())["model"])


@pytest.fixture(scope="module")
def family(live_stack: LiveStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A parent and two children, trained by the live worker: the parent, the longer run and the new head."""
    client = Client(live_stack.url, live_stack.token)
    parent = client.submit(MOONS, name="pretrain").wait()
    assert parent.status == "succeeded", live_stack.logs()
    tmp_path = tmp_path_factory.mktemp("lineage")

    # Both children queued before either is waited on. The Python client: train longer from the parent's
    # latest state; the CLI: a frozen body with a new head, from its best checkpoint.
    keep = {"job": parent.id[:8], "checkpoint": "latest", "optimizer_state": "keep"}
    longer = client.submit(MOONS, name="longer", init_from=keep)
    spec_file = tmp_path / "head.yaml"
    spec_file.write_text(yaml.safe_dump(MOONS | {"init_from": {"load": "body", "freeze": "body"}}))
    source = f"{parent.id[:8]}:best"
    submitted = _nnforge(live_stack, "submit", str(spec_file), "--from", source, "--no-wait", "-o", "json")
    assert submitted.exit_code == 0, submitted.output + live_stack.logs()
    head = client.job(json.loads(submitted.stdout)["id"]).wait().data
    assert longer.wait().status == "succeeded", live_stack.logs()

    latest = client.job(parent.id).checkpoints()[-1]["id"]
    expected = {"job_id": parent.id, "checkpoint_id": latest, "load": "all", "freeze": "none"}
    assert longer.data["parent"] == expected
    assert head["status"] == "succeeded" and head["parent"]["job_id"] == parent.id
    assert head["spec"]["init_from"]["freeze"] == "body"
    before = _weights(client, parent.id, "best", tmp_path)
    after = _weights(client, head["id"], "latest", tmp_path)
    assert torch.equal(before["layers.0.weight"], after["layers.0.weight"])  # the frozen body
    assert not torch.equal(before["layers.2.weight"], after["layers.2.weight"])  # the new head trained
    return {"parent": parent.data, "longer": longer.refresh().data, "head": head}


def test_children_train_from_their_parent_and_the_cli_draws_the_tree(
    live_stack: LiveStack, family: dict[str, Any]
) -> None:
    parent, longer, head = family["parent"], family["longer"], family["head"]
    drawn = _nnforge(live_stack, "lineage", parent["id"][:8])
    assert drawn.exit_code == 0, drawn.output
    lines = drawn.stdout.splitlines()
    assert lines[0].startswith(parent["id"][:8]) and lines[0].endswith("◀")
    assert {line[3:11] for line in lines[1:]} == {longer["id"][:8], head["id"][:8]}
    assert any(line.startswith("├─ ") for line in lines) and lines[-1].startswith("└─ ")


def test_dashboard_links_parent_and_children_and_submits_from_a_job(  # type: ignore[no-untyped-def]
    page, family: dict[str, Any]  # noqa: F811
) -> None:
    parent, head = family["parent"], family["head"]
    page.goto(f"/ui/jobs/{parent['id']}")
    page.wait_for_selector("#lineage:not([hidden]) #lineage-children a")
    linked = page.eval_on_selector_all("#lineage-children a", "links => links.map(a => a.dataset.jobId)")
    assert set(linked) == {family["longer"]["id"], head["id"]}

    page.click(f"#lineage-children a[data-job-id='{head['id']}']")
    page.wait_for_selector(f"#lineage-chain a[data-job-id='{parent['id']}']")
    assert "load body, freeze body" in page.text_content("#lineage-chain")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-lineage.png"), full_page=True)

    page.click("#lineage-fine-tune")
    page.wait_for_url("**/ui/submit?from=*")
    assert page.input_value("#submit-from") == head["id"]
    page.select_option("#submit-template", "mlp")  # the catalog is in, and the form's handler attached
    page.fill("#submit-spec", json.dumps(MOONS))
    page.fill("#submit-from", f"{head['id'][:8]}:latest")
    page.select_option("#submit-load", "body")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url("**/ui/jobs/*")
    page.wait_for_selector(f"#lineage-chain a[data-job-id='{head['id']}']")
    assert "load body, freeze none" in page.text_content("#lineage-chain")
