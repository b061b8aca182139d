"""The claim, on PostgreSQL and on SQLite: whichever job a message named, it starts the fairest queued job of
the queue (fewest running, then least recently served owner, then priority, then age), each message starts
exactly one job, and a job's first start survives its later attempts."""

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from job_rows import insert, job_row
from sqlalchemy.orm import Session, sessionmaker

from app.db import job_state
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.job_state import JobStatus
from app.db.tables import Job
from workers.job_store import claim_next


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url, pool_size=30)
    yield make_session_factory(engine)
    engine.dispose()


def _queue_jobs(url: str, queue: str, jobs: list[tuple[str, str]]) -> dict[str, str]:
    """Queued jobs, created a minute apart in the order given: {name: id} for (owner, name) pairs; a name
    ending in '!' is a high-priority job."""
    rows = [
        job_row(
            owner,
            minute,
            status=JobStatus.QUEUED.value,
            queue=queue,
            attempt=0,
            started_at=None,
            finished_at=None,
            priority="high" if name.endswith("!") else "normal",
        )
        for minute, (owner, name) in enumerate(jobs)
    ]
    return dict(zip([name for _, name in jobs], insert(url, rows), strict=True))


def _claim(factory: sessionmaker[Session], queue: str, token: str, limit: int = 100) -> str | None:
    claimed = claim_next(factory, queue=queue, token=token, max_running_per_owner=limit)
    return claimed.id if claimed is not None else None


def _positions(factory: sessionmaker[Session], queue: str, ids: dict[str, str]) -> list[str]:
    """The queued jobs' names in the order of their queue_position."""
    with factory() as session:
        position = {name: job_state.queue_position(session, job_id=i, queue=queue) for name, i in ids.items()}
    return sorted((name for name, p in position.items() if p is not None), key=lambda n: position[n])


def test_one_slot_takes_owners_in_turns_then_priority_then_age(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    a, b, queue = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}", f"q-{uuid.uuid4().hex[:8]}"
    ids = _queue_jobs(
        database_url, queue, [(a, "A1"), (a, "A2"), (a, "A3"), (b, "B1"), (b, "B2"), (a, "A4!")]
    )
    by_id = {i: name for name, i in ids.items()}
    # Neither owner has run anything: priority, then age, across both
    assert _positions(factory, queue, ids) == ["A4!", "A1", "A2", "A3", "B1", "B2"]

    started = []
    for turn in range(len(ids)):  # one slot: each job ends before the next claim
        job_id = _claim(factory, queue, f"slot-{turn}")
        assert job_id is not None
        started.append(by_id[job_id])
        if turn == 0:  # A runs one job: B's jobs, younger, are next, and the positions say so
            assert _positions(factory, queue, ids) == ["B1", "B2", "A1", "A2", "A3"]
        with transaction(factory) as session:
            assert job_state.finish(session, job_id=job_id, token=f"slot-{turn}", status=JobStatus.SUCCEEDED)

    # B, with two jobs, waits behind one of A's jobs at most; A's high job goes before A's older ones
    assert started == ["A4!", "B1", "A1", "B2", "A2", "A3"]
    assert _claim(factory, queue, "nothing-left") is None


def test_an_owner_running_fewer_jobs_goes_first(database_url: str, factory: sessionmaker[Session]) -> None:
    a, b, queue = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}", f"q-{uuid.uuid4().hex[:8]}"
    ids = _queue_jobs(database_url, queue, [(a, f"A{i}") for i in range(1, 5)] + [(b, "B1"), (b, "B2")])
    by_id = {i: name for name, i in ids.items()}
    # every job keeps running: the owner with fewer running jobs goes first; at a tie, the longer waiting
    started = [by_id[_claim(factory, queue, f"slot-{slot}") or ""] for slot in range(6)]
    assert started == ["A1", "B1", "A2", "B2", "A3", "A4"]


def test_each_message_starts_exactly_one_job(database_url: str, factory: sessionmaker[Session]) -> None:
    """24 queued jobs of 3 owners, 24 messages handled at once: 24 different jobs start, each once, whichever
    job each message named; the 25th message finds nothing to start."""
    queue = f"q-{uuid.uuid4().hex[:8]}"
    owners = [f"o{k}-{uuid.uuid4().hex[:6]}" for k in range(3)]
    ids = _queue_jobs(database_url, queue, [(owners[i % 3], f"J{i}") for i in range(24)])
    barrier = threading.Barrier(24)
    started: list[str | None] = [None] * 24

    def deliver(slot: int) -> None:
        barrier.wait()
        started[slot] = _claim(factory, queue, f"message-{slot}")

    threads = [threading.Thread(target=deliver, args=(slot,)) for slot in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(s or "" for s in started) == sorted(ids.values())
    assert _claim(factory, queue, "message-24") is None
    with factory() as session:
        rows = [session.get_one(Job, job_id) for job_id in ids.values()]
        assert {(r.status, r.attempt) for r in rows} == {(JobStatus.RUNNING.value, 1)}
        assert len({r.lease_owner for r in rows}) == 24


def test_a_later_attempt_keeps_the_first_start(database_url: str, factory: sessionmaker[Session]) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    job_id = _queue_jobs(database_url, queue, [(f"o-{uuid.uuid4().hex[:6]}", "J")])["J"]
    assert _claim(factory, queue, "first") == job_id
    with factory() as session:
        first = session.get_one(Job, job_id)
        assert first.started_at is not None and first.attempt_started_at == first.started_at
    with transaction(factory) as session:
        assert job_state.hand_back(session, job_id=job_id, token="first") == queue

    assert _claim(factory, queue, "second") == job_id
    with transaction(factory) as session:
        job_state.finish(session, job_id=job_id, token="second", status=JobStatus.SUCCEEDED)
    with factory() as session:
        job = session.get_one(Job, job_id)
    assert job.attempt == 2 and job.started_at == first.started_at
    assert job.attempt_started_at is not None and job.attempt_started_at > first.started_at
    assert job.finished_at is not None
    duration = job.finished_at - job.started_at
    assert duration >= job.finished_at - job.attempt_started_at >= timedelta(0)  # from the first start
