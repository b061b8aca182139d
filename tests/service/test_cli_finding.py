"""Finding jobs again from the command line (a subprocess) and the Python client, against a live API:
tags and notes at submit, `nnforge tag`, `nnforge list`'s filters and sorts, ids by unique prefix."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from job_rows import insert, job_row
from live_stack import LiveStack
from support import ROOT

from app.client.client import AmbiguousJobId, Client, NnforgeError

MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


def nnforge(stack: LiveStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "NNFORGE_URL": stack.url,
        "NNFORGE_TOKEN": stack.token,
        "HOME": "/nonexistent",
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-c", "from app.client.cli import main; main()", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_out(run: subprocess.CompletedProcess[str]) -> object:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def twins(live_stack: LiveStack) -> list[str]:
    """Two finished jobs of the live user whose ids share the prefix `feedbee`, with val_accuracy, tagged."""
    tag = f"twins-{uuid.uuid4().hex[:6]}"
    rows = [
        job_row(
            "live-user",
            minute,
            id=f"feedbee{n}-0000-4000-8000-{uuid.uuid4().hex[:12]}",
            tags=[tag],
            best_metrics={"val_accuracy": accuracy},
        )
        for n, minute, accuracy in ((0, 0, 0.7), (1, 1, 0.9))
    ]
    return [tag, *insert(live_stack.settings.resolved_database_url, rows)]


def test_cli_submits_with_tags_and_notes_then_lists_tags_and_shows_them(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(yaml.safe_dump({**MOONS, "tags": ["from-file"], "notes": "the file's"}))
    tag = f"cli-{uuid.uuid4().hex[:6]}"
    args = ["submit", str(spec_file), "--name", f"run {tag}", "--tag", tag, "--tag", "from-file"]
    args += ["--notes", "line one\nline two", "--priority", "high"]
    job = json_out(nnforge(live_stack, *args, "--no-wait", "-o", "json"))
    assert isinstance(job, dict)
    assert (job["tags"], job["notes"]) == (["from-file", tag], "line one\nline two")
    assert job["priority"] == "high"
    refused = nnforge(live_stack, "submit", str(spec_file), "--priority", "urgent", "--no-wait")
    assert refused.returncode == 2 and "urgent" in refused.stderr
    prefix = job["id"][:8]

    listed = json_out(nnforge(live_stack, "list", "--tag", tag, "-o", "json"))
    assert [item["id"] for item in listed] == [job["id"]]  # type: ignore[union-attr]
    assert json_out(nnforge(live_stack, "list", "--tag", tag, "--tag", "nobody", "-o", "json")) == []
    table = nnforge(live_stack, "list", "--tag", tag, "--name", f"RUN {tag.upper()}", "--arch", "mlp")
    assert table.returncode == 0 and f"from-file {tag}" in table.stdout

    changed = nnforge(live_stack, "tag", prefix, "+extra", "-from-file", "plain")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.split() == [job["id"], tag, "extra", "plain"]
    shown = nnforge(live_stack, "tag", prefix)  # no changes: prints them
    assert shown.stdout.split() == [job["id"], tag, "extra", "plain"]
    as_json = json_out(nnforge(live_stack, "tag", prefix, "-extra", "-plain", "--output", "json"))
    assert as_json["tags"] == [tag]  # type: ignore[index]
    refused = nnforge(live_stack, "tag", prefix, "+has space")
    assert refused.returncode == 2 and "add_tags.0" in refused.stderr

    status = nnforge(live_stack, "status", prefix)
    assert status.returncode in (0, 1), status.stderr
    assert (
        f"tags: {tag}" in status.stdout
        and "notes: line one\n" in status.stdout
        and "line two" in status.stdout
    )


def test_cli_resolves_unique_prefixes_and_names_the_ids_of_an_ambiguous_one(
    live_stack: LiveStack, twins: list[str]
) -> None:
    _, first, second = twins
    ambiguous = nnforge(live_stack, "status", "feedbee")
    assert ambiguous.returncode == 2
    assert "feedbee matches 2 jobs" in ambiguous.stderr
    assert first in ambiguous.stderr and second in ambiguous.stderr
    for command in (["status"], ["metrics"], ["logs"], ["tag"]):
        resolved = nnforge(
            live_stack, *command, "feedbee1", "-o" if command != ["tag"] else "--output", "json"
        )
        assert resolved.returncode == 0, (command, resolved.stderr)
    assert json_out(nnforge(live_stack, "status", "FEEDBEE0", "-o", "json"))["id"] == first  # type: ignore[index]
    missing = nnforge(live_stack, "status", "0000ffff")
    assert missing.returncode == 2 and "no job id starts with 0000ffff" in missing.stderr
    short = nnforge(live_stack, "status", "fee")
    assert short.returncode == 2 and "id_prefix" in short.stderr


def test_cli_list_sorts_by_a_metric_either_way(live_stack: LiveStack, twins: list[str]) -> None:
    tag, first, second = twins
    for sort, expected in (("-best.val_accuracy", [second, first]), ("best.val_accuracy", [first, second])):
        for form in (["--sort", sort], [f"--sort={sort}"]):
            listed = json_out(nnforge(live_stack, "list", "--tag", tag, *form, "-o", "json"))
            assert [job["id"] for job in listed] == expected, form  # type: ignore[union-attr]
    bad = nnforge(live_stack, "list", "--sort", "accuracy")
    assert bad.returncode == 2 and "query.sort" in bad.stderr


def test_client_finds_tags_and_resolves_jobs(live_stack: LiveStack, twins: list[str]) -> None:
    tag, first, second = twins
    with Client(live_stack.url, live_stack.token) as client:
        assert client.resolve("feedbee0") == first
        assert client.job("feedbee1").id == second
        with pytest.raises(AmbiguousJobId) as ambiguous:
            client.job("feedbee")
        assert set(ambiguous.value.matches) == {first, second} and not ambiguous.value.more
        with pytest.raises(NnforgeError) as missing:
            client.job("0000ffff")
        assert missing.value.status == 404

        assert [job.id for job in client.jobs(tags=[tag], sort="-best.val_accuracy")] == [second, first]
        assert [job.id for job in client.jobs(tags=[tag], created_before="2026-01-01T00:01:00Z")] == [first]
        job = client.job(first).update(name="renamed", notes="kept")
        assert (job.data["name"], job.data["notes"], job.data["tags"]) == ("renamed", "kept", [tag])
        assert job.tag(add=["x", "y"], remove=[tag]).data["tags"] == ["x", "y"]
        assert job.update(tags=[tag], notes=None).data["tags"] == [tag] and job.data["notes"] is None

        submitted = client.submit(MOONS, name="sdk", tags=["sdk", "sdk"], notes="from python", priority="low")
        assert (submitted.data["tags"], submitted.data["notes"]) == (["sdk"], "from python")
        assert submitted.data["priority"] == client.job(submitted.id).data["priority"] == "low"
        assert client.submit(MOONS).data["priority"] == "normal"
