"""A full database disk is told apart from an outage: the worker waits for space as through an outage, and
after DB_OUTAGE_SECONDS the job fails as no_space with a sentence, not a traceback; the API answers 507."""

import errno
import sqlite3

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from app.api.problems import install_problem_handlers
from app.db.no_space import is_no_space
from workers.job_store import NoSpace, _retried


def _sqlite_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = 13  # type: ignore[attr-defined]  (what sqlite3 sets for SQLITE_FULL)
    return error


@pytest.mark.parametrize(
    ("cause", "full"),
    [
        (psycopg.errors.DiskFull("could not extend file"), True),
        (_sqlite_full(), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (psycopg.OperationalError("connection refused"), False),
        (sqlite3.OperationalError("database is locked"), False),
    ],
)
def test_is_no_space_tells_a_full_disk_from_an_outage(cause: Exception, full: bool) -> None:
    assert is_no_space(OperationalError("INSERT …", None, cause)) is full


def test_writes_wait_for_space_then_raise_no_space_after_the_outage_allowance() -> None:
    calls = 0

    def write() -> None:
        nonlocal calls
        calls += 1
        raise OperationalError("COPY metric …", None, psycopg.errors.DiskFull("could not extend file"))

    with pytest.raises(NoSpace, match=r"no space left on the database's disk for 0\.3 s"):
        _retried(write, outage_seconds=0.3, what="job j")
    assert calls >= 2  # retried meanwhile, as through an outage


def test_the_api_answers_507_with_a_problem_detail_for_a_full_disk_and_503_for_an_outage() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/full")
    def full() -> None:
        raise OperationalError("INSERT …", None, psycopg.errors.DiskFull("could not extend file"))

    @app.get("/down")
    def down() -> None:
        raise OperationalError("SELECT 1", None, psycopg.OperationalError("connection refused"))

    client = TestClient(app)
    answer = client.get("/full")
    assert (answer.status_code, answer.headers["content-type"]) == (507, "application/problem+json")
    assert "no space left on the database's disk" in answer.json()["detail"]
    assert client.get("/down").status_code == 503
