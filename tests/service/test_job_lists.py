"""Finding jobs again: tags and notes (POST, PATCH), GET /v1/jobs's filters, sorts and keyset pages, and id
prefixes, on PostgreSQL; the derived tag and metric rows on SQLite; migration 0011 both ways."""

import io
import math
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from conftest import POSTGRES_ADMIN_URL, new_token
from fastapi.testclient import TestClient
from job_rows import T0, insert, job_row

from app.api.job_lists import list_jobs
from app.api.main import create_app
from app.api.schemas import JobListQuery
from app.core.settings import Settings
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.migrate import alembic_config, upgrade_to_head
from app.db.tables import Job, JobBestMetric, JobTag

MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}


@pytest.fixture(scope="module")
def owner() -> str:
    return f"finder-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def api(api_settings: Settings, owner: str) -> Iterator[TestClient]:
    unlimited = api_settings.model_copy(update={"rate_limit_per_second": 1e6, "rate_limit_burst": 10**6})
    with TestClient(create_app(unlimited)) as client:  # the page walks send hundreds of requests
        client.headers["Authorization"] = f"Bearer {new_token(api_settings, owner)}"
        yield client


def ids(api: TestClient, **params: Any) -> list[str]:
    response = api.get("/v1/jobs", params={"limit": 200} | params)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [job["id"] for job in response.json()["items"]]


def walk(api: TestClient, limit: int, **params: Any) -> list[str]:
    """Every job, page by page, following next_cursor."""
    seen: list[str] = []
    cursor = None
    while True:
        page = api.get("/v1/jobs", params=params | {"limit": limit} | ({"cursor": cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        seen += [job["id"] for job in page.json()["items"]]
        if (cursor := page.json()["next_cursor"]) is None:
            return seen


def problem_fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["field"] for error in response.json()["errors"]]


def test_submit_keeps_tags_and_notes_and_patch_changes_them(api: TestClient) -> None:
    created = api.post("/v1/jobs", json={**MOONS, "name": "n", "tags": ["b", "a", "b"], "notes": "first"})
    assert created.status_code == 202, created.text
    job = created.json()
    assert (job["tags"], job["notes"]) == (["b", "a"], "first")  # a set, in the order given
    assert "tags" not in job["spec"] and "notes" not in job["spec"]
    path = f"/v1/jobs/{job['id']}"
    assert api.get(path).json()["tags"] == ["b", "a"]

    renamed = api.patch(path, json={"name": "renamed", "notes": "second\nline"}).json()
    assert (renamed["name"], renamed["notes"], renamed["tags"]) == ("renamed", "second\nline", ["b", "a"])
    assert api.patch(path, json={"tags": ["c"]}).json()["tags"] == ["c"]
    changed = api.patch(path, json={"add_tags": ["d", "c"], "remove_tags": ["c", "zzz"]}).json()
    assert changed["tags"] == ["d", "c"]  # removals first, then additions
    assert api.patch(path, json={}).json()["tags"] == ["d", "c"]  # nothing sent, nothing changed
    cleared = api.patch(path, json={"name": None, "notes": None, "tags": []}).json()
    assert (cleared["name"], cleared["notes"], cleared["tags"]) == (None, None, [])
    assert api.get(path).json()["name"] is None  # the status cache forgot the old answer
    assert api.patch("/v1/jobs/" + "0" * 36, json={"tags": ["x"]}).status_code == 404


def test_patch_works_in_every_status(api: TestClient, api_settings: Settings, owner: str) -> None:
    statuses = ["queued", "running", "succeeded", "failed", "cancelled"]
    job_ids = insert(api_settings.resolved_database_url, [job_row(owner, 0, status=s) for s in statuses])
    for job_id, status in zip(job_ids, statuses, strict=True):
        response = api.patch(f"/v1/jobs/{job_id}", json={"add_tags": [status], "notes": status})
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["tags"]) == (status, [status])


LONGEST = "t" * 40
REFUSED = [
    ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
    ({"tags": ["t" * 41]}, "tags.0"),
    ({"tags": ["ok", "-leading-dash"]}, "tags.1"),
    ({"tags": ["has space"]}, "tags.0"),
    ({"tags": [""]}, "tags.0"),
    ({"tags": [7]}, "tags.0"),
    ({"notes": "n" * 10_001}, "notes"),
    ({"name": "n" * 201}, "name"),
    ({"notes": "NUL \x00"}, "notes"),  # PostgreSQL's text cannot hold it: a 422, not a 500
    ({"name": "NUL \x00"}, "name"),
]


@pytest.mark.parametrize(("body", "field"), REFUSED)
def test_submit_refuses_tags_notes_and_names_over_their_limits(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/jobs", json={**MOONS, **body})
    assert problem_fields(response) == [field]
    assert response.json()["errors"][0]["value"] is not None


@pytest.mark.parametrize(
    ("body", "field"), [*REFUSED, ({"tags": None}, "tags"), ({"colour": "red"}, "colour")]
)
def test_patch_refuses_what_submit_refuses(api: TestClient, body: dict[str, Any], field: str) -> None:
    job_id = api.post("/v1/jobs", json=MOONS).json()["id"]
    assert problem_fields(api.patch(f"/v1/jobs/{job_id}", json=body)) == [field]


def test_tags_and_notes_at_their_limits_are_accepted_and_patch_counts_after_adding(api: TestClient) -> None:
    full = [f"{i:02d}{LONGEST[2:]}" for i in range(20)]
    job = api.post("/v1/jobs", json={**MOONS, "tags": full, "notes": "n" * 10_000, "name": "n" * 200})
    assert job.status_code == 202, job.text
    path = f"/v1/jobs/{job.json()['id']}"
    over = api.patch(path, json={"add_tags": ["one-more"]})
    assert problem_fields(over) == ["add_tags"]
    assert "at most 20" in over.json()["errors"][0]["reason"]
    swapped = api.patch(path, json={"add_tags": ["one-more"], "remove_tags": [full[0]]})
    assert swapped.status_code == 200 and len(swapped.json()["tags"]) == 20
    assert problem_fields(api.patch(path, json={"tags": ["a"], "add_tags": ["b"]})) == ["tags"]
    for tag in ("a.b", "lr=0.01", "sweep:3", "team/x", "A_Z-9"):  # the pattern's other characters
        assert api.patch(path, json={"tags": [tag]}).status_code == 200, tag


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tag": "-x"}, "query.tag.0"),
        ({"id_prefix": "abc"}, "query.id_prefix"),
        ({"id_prefix": "ghij"}, "query.id_prefix"),
        ({"sort": "accuracy"}, "query.sort"),
        ({"sort": "-best."}, "query.sort"),
        ({"created_after": "yesterday"}, "query.created_after"),
        ({"created_before": "2026"}, "query.created_before"),  # not a Unix time
        ({"limit": 201}, "query.limit"),
        ({"status": "sleeping"}, "query.status"),
        ({"name": "NUL \x00"}, "query.name"),
        ({"created_after": "0001-01-01T00:00:00+14:00"}, "query.created_after"),  # before UTC's first
    ],
)
def test_list_refuses_bad_filters_naming_the_parameter(
    api: TestClient, params: dict[str, Any], field: str
) -> None:
    assert problem_fields(api.get("/v1/jobs", params=params)) == [field]


def as_owner(api: TestClient, settings: Settings, owner: str) -> TestClient:
    """Another client of the same app, with a token of `owner`."""
    return TestClient(api.app, headers={"Authorization": f"Bearer {new_token(settings, owner)}"})


@pytest.fixture(scope="module")
def catalog(api: TestClient, api_settings: Settings) -> tuple[TestClient, dict[str, str]]:
    """A fresh owner's jobs, each with what one filter looks for, by name."""
    owner = f"catalog-{uuid.uuid4().hex[:6]}"
    rows = {
        "plain": job_row(owner, 0, name="Plain run"),
        "cnn": job_row(owner, 1, arch="cnn", name="conv"),
        "queued": job_row(owner, 2, status="queued", started_at=None, finished_at=None),
        "sgd": job_row(owner, 3, optimizer="sgd"),
        "moons": job_row(owner, 4, dataset="moons", tags=["sweep", "baseline"]),
        "odd-name": job_row(owner, 5, tags=["sweep"], name="THE_upload%"),
        "late": job_row(owner, 60, tags=["baseline"], name="late plain"),
    }
    insert(api_settings.resolved_database_url, list(rows.values()))
    return as_owner(api, api_settings, owner), {name: row["id"] for name, row in rows.items()}


def test_list_filters_each_and_combined(catalog: tuple[TestClient, dict[str, str]]) -> None:
    client, by_name = catalog
    named = {job_id: name for name, job_id in by_name.items()}

    def found(**params: Any) -> set[str]:
        return {named[job_id] for job_id in ids(client, **params)}

    everything = set(by_name)
    assert found() == everything
    assert found(status="queued") == {"queued"}
    assert found(arch="cnn") == {"cnn"}
    assert found(tag="sweep") == {"moons", "odd-name"}
    assert found(tag=["sweep", "baseline"]) == {"moons"}  # repeated: every tag
    assert found(tag="nobody-uses-this") == set()
    assert found(name="PLAIN") == {"plain", "late"}  # a substring, in any case
    assert found(name="_upload%") == {"odd-name"}  # LIKE's wildcards are plain characters
    assert found(name="n_upload") == set()
    assert found(optimizer="sgd") == {"sgd"}
    assert found(optimizer="adam") == everything - {"sgd"}
    assert found(dataset="moons") == {"moons"}
    assert found(dataset="digits") == everything - {"moons"}
    assert found(created_after="2026-01-01T00:04:00Z") == {"moons", "odd-name", "late"}  # inclusive
    assert found(created_before="2026-01-01T00:04:00") == {"plain", "cnn", "queued", "sgd"}  # exclusive, UTC
    assert found(created_after="2026-01-01T01:04:00+01:00") == {"moons", "odd-name", "late"}  # its own zone
    assert found(id_prefix=by_name["cnn"][:8]) == {"cnn"}
    assert found(id_prefix=by_name["cnn"][:8].upper()) == {"cnn"}
    assert found(tag="baseline", name="plain", created_after="2026-01-01T00:30:00Z") == {"late"}
    assert found(tag="sweep", optimizer="adam", status="succeeded", arch="mlp") == {"moons", "odd-name"}
    assert found(tag="sweep", status="queued") == set()


def test_dataset_filter_finds_jobs_on_an_upload_by_its_id(api: TestClient) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((20, 2), np.float32), y=np.arange(20) % 2)
    dataset_id = api.post("/v1/datasets", files={"file": ("f.npz", buffer.getvalue())}).json()["id"]
    job_id = api.post("/v1/jobs", json={**MOONS, "dataset": {"id": dataset_id}}).json()["id"]
    assert ids(api, dataset=dataset_id) == [job_id]


@pytest.fixture(scope="module")
def ranked(api: TestClient, api_settings: Settings) -> tuple[TestClient, list[dict[str, Any]]]:
    """25 jobs of a fresh owner: val_accuracy with ties, some without it, one NaN; durations with ties,
    some unfinished; test_accuracy only in best_test_metrics."""
    owner = f"ranked-{uuid.uuid4().hex[:6]}"
    rows = []
    for i in range(25):
        metrics: dict[str, Any] = {} if i % 6 == 5 else {"val_accuracy": round(0.5 + (i % 4) * 0.1, 2)}
        if i % 6 != 5:
            metrics["val_loss"] = 1.0 - metrics["val_accuracy"]
        if i == 7:
            metrics["val_accuracy"] = "NaN"  # a diverged run's value, as the JSON columns hold it
        finished = i % 5 != 4
        created = T0 + timedelta(minutes=i // 2)  # pairs share their creation time
        rows.append(
            job_row(
                owner,
                0,
                created_at=created,
                started_at=created if i % 10 != 9 else None,
                finished_at=created + timedelta(seconds=10 * (i % 3)) if finished else None,
                status="succeeded" if finished else "running",
                best_metrics=metrics,
                best_test_metrics={"test_accuracy": i / 100} if i % 2 else {},
            )
        )
    insert(api_settings.resolved_database_url, rows)
    return as_owner(api, api_settings, owner), rows


def expected_order(rows: list[dict[str, Any]], sort: str) -> list[str]:
    """The order the API promises, computed here: the key's order (ties by id, the same way), then the
    jobs without the key, newest first (ties by id, descending)."""
    descending, key = sort.startswith("-"), sort.lstrip("-")

    def value(row: dict[str, Any]) -> Any:
        if key == "created":
            return row["created_at"]
        if key == "duration":
            ends = row["started_at"], row["finished_at"]
            return None if None in ends else (ends[1] - ends[0]).total_seconds()
        name = key.removeprefix("best.")
        got = row["best_metrics"].get(name, row["best_test_metrics"].get(name))
        return got if isinstance(got, float) and math.isfinite(got) else None

    having = sorted(
        (row for row in rows if value(row) is not None), key=lambda r: (value(r), r["id"]), reverse=descending
    )
    lacking = sorted(
        (row for row in rows if value(row) is None), key=lambda r: (r["created_at"], r["id"]), reverse=True
    )
    return [row["id"] for row in having + lacking]


SORTS = [
    "-created",
    "created",
    "-duration",
    "duration",
    "-best.val_accuracy",
    "best.val_accuracy",
    "best.val_loss",
    "-best.test_accuracy",
    "-best.never_reported",
]


@pytest.mark.parametrize("sort", SORTS)
def test_every_sort_pages_without_gaps_or_repeats(
    ranked: tuple[TestClient, list[dict[str, Any]]], sort: str
) -> None:
    client, rows = ranked
    expected = expected_order(rows, sort)
    assert ids(client, sort=sort) == expected
    for limit in (1, 4, 7):
        assert walk(client, limit, sort=sort) == expected, limit


def test_metric_sort_puts_jobs_without_the_metric_last(
    ranked: tuple[TestClient, list[dict[str, Any]]],
) -> None:
    client, rows = ranked
    jobs = client.get("/v1/jobs", params={"sort": "-best.val_accuracy", "limit": 200}).json()["items"]
    values = [job["best_metrics"].get("val_accuracy") for job in jobs]
    numbers = [v for v in values if isinstance(v, float)]
    assert numbers == sorted(numbers, reverse=True) and values[: len(numbers)] == numbers
    assert all(not isinstance(v, float) for v in values[len(numbers) :])  # missing or "NaN", at the end
    assert len(numbers) == sum(1 for r in rows if isinstance(r["best_metrics"].get("val_accuracy"), float))
    filtered = client.get("/v1/jobs", params={"sort": "-best.val_accuracy", "status": "running"}).json()
    assert {job["status"] for job in filtered["items"]} == {"running"}


def test_cursor_of_one_sort_is_refused_under_another(ranked: tuple[TestClient, list[dict[str, Any]]]) -> None:
    client, _ = ranked
    cursor = client.get("/v1/jobs", params={"sort": "-best.val_accuracy", "limit": 2}).json()["next_cursor"]
    for other in ("-created", "best.val_accuracy", "-duration", "-best.val_loss"):
        response = client.get("/v1/jobs", params={"sort": other, "cursor": cursor})
        assert problem_fields(response) == ["cursor"]
        assert "sort=-best.val_accuracy" in response.json()["errors"][0]["reason"]
    assert client.get("/v1/jobs", params={"sort": "-best.val_accuracy", "cursor": cursor}).status_code == 200
    assert problem_fields(client.get("/v1/jobs", params={"cursor": "bm90IGpzb24="})) == ["cursor"]


def test_id_prefix_finds_every_job_it_starts(api: TestClient, api_settings: Settings, owner: str) -> None:
    rows = [job_row(owner, 0, id=f"c0ffee{n}0-0000-4000-8000-{n:012d}") for n in range(3)]
    insert(api_settings.resolved_database_url, rows)
    assert set(ids(api, id_prefix="c0ffee")) == {row["id"] for row in rows}
    assert ids(api, id_prefix="c0ffee10") == [rows[1]["id"]]
    assert ids(api, id_prefix=rows[2]["id"]) == [rows[2]["id"]]
    assert ids(api, id_prefix="c0ffee9") == []


def _sqlite_list(url: str, owner: str, **query: Any) -> list[str]:
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        page = list_jobs(session=session, owner=owner, query=JobListQuery(**query))
    engine.dispose()
    return [job.id for job in page.jobs]


def test_sqlite_keeps_the_tag_and_metric_rows_and_lists_the_same_way(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nnforge.db'}"
    upgrade_to_head(url)
    rows = [
        job_row("o", 0, tags=["a", "b"], best_metrics={"val_accuracy": 0.5}),
        job_row("o", 1, tags=["a"], best_metrics={"val_accuracy": 0.9}, started_at=None),
        job_row("o", 2, best_metrics={"val_accuracy": "NaN"}, best_test_metrics={"test_accuracy": 0.7}),
    ]
    rows[2]["finished_at"] += timedelta(seconds=60)  # the longest run
    first, second, third = insert(url, rows)
    assert _sqlite_list(url, "o", tag=["a"]) == [second, first]
    assert _sqlite_list(url, "o", tag=["a", "b"]) == [first]
    assert _sqlite_list(url, "o", sort="-best.val_accuracy") == [second, first, third]
    assert _sqlite_list(url, "o", sort="best.test_accuracy") == [third, second, first]
    assert _sqlite_list(url, "o", sort="-duration") == [third, first, second]
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as session:
        session.execute(sa.update(Job).where(Job.id == first).values(tags=["c"], best_metrics={}))
    with make_session_factory(engine)() as session:
        assert session.scalars(sa.select(JobTag.tag).where(JobTag.job_id == first)).all() == ["c"]
        assert session.scalars(sa.select(JobBestMetric.name).where(JobBestMetric.job_id == first)).all() == []
        session.execute(sa.delete(Job).where(Job.id == second))
        session.commit()
        assert (
            session.scalar(sa.select(sa.func.count()).select_from(JobTag).where(JobTag.job_id == second)) == 0
        )
    engine.dispose()


@pytest.fixture
def scratch_postgres() -> Iterator[str]:
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"nnforge_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_migration_0011_backfills_downgrades_and_upgrades_again(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("scratch_postgres")
        if dialect == "postgresql"
        else f"sqlite:///{tmp_path}/x.db"
    )
    config = alembic_config(url)
    command.upgrade(config, "0010")
    row = job_row("o", 0, best_metrics={"val_loss": 0.25}, best_test_metrics={"test_loss": 0.5})
    engine = make_engine(url)
    with engine.begin() as connection:  # the table as 0010 left it: no tags, no notes
        columns = [sa.column(name, Job.__table__.c[name].type) for name in row]
        connection.execute(sa.table("job", *columns).insert(), [row])
    command.upgrade(config, "head")
    with engine.connect() as connection:
        metrics = connection.execute(sa.text("SELECT name, value FROM job_best_metric ORDER BY name")).all()
        assert [tuple(m) for m in metrics] == [("test_loss", 0.5), ("val_loss", 0.25)]
        assert connection.execute(sa.text("SELECT tags FROM job")).scalar_one() in ([], "[]")
    command.downgrade(config, "0010")
    command.upgrade(config, "head")
    engine.dispose()
