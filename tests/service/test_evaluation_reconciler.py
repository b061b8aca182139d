"""The reconciler's part for evaluations: a queued one whose message was lost is sent again (at most once a
minute per worker), a running one whose worker died is failed; on PostgreSQL and SQLite."""

import uuid
from datetime import timedelta

import pytest
from conftest import redis_database
from sqlalchemy import update
from stored_rows import finished_job

from app.core.queue import make_celery
from app.core.settings import Settings
from app.db import evaluations
from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.tables import Evaluation, Job
from workers import evaluations as worker_evaluations

REDIS_DB = 10


def test_lost_messages_are_sent_again_and_lost_runs_fail(database_url: str) -> None:
    factory = make_session_factory(make_engine(database_url))
    celery = make_celery(Settings(database_url=database_url, redis_url=redis_database(REDIS_DB)))
    queue = f"ev-{uuid.uuid4().hex[:8]}"  # a queue of its own: no worker reads it
    with transaction(factory) as session:
        job = session.get_one(Job, finished_job(session, "reconciled"))
        job.queue = queue
        made = {
            name: evaluations.create_evaluation(
                session, job=job, kind="report", checkpoint_id=1, split="test", params={}
            ).id
            for name in ("fresh", "waiting", "lost", "running")
        }
        ago = utcnow() - timedelta(seconds=worker_evaluations.RESEND_AFTER_SECONDS + 5)
        long_ago = utcnow() - timedelta(seconds=worker_evaluations.EVALUATION_TIMEOUT_SECONDS + 120)
        for name in ("waiting", "lost", "running"):
            session.execute(update(Evaluation).where(Evaluation.id == made[name]).values(created_at=long_ago))
        session.execute(
            update(Evaluation)
            .where(Evaluation.id.in_([made["lost"], made["running"]]))
            .values(status="running", started_at=long_ago)
        )
        session.execute(update(Evaluation).where(Evaluation.id == made["running"]).values(started_at=ago))

    counts = worker_evaluations.settle_stale_evaluations(factory, celery)
    again = worker_evaluations.settle_stale_evaluations(factory, celery)  # within the minute: nothing new

    assert counts == {"evaluations_resent": 1, "evaluations_lost": 1}
    assert again == {}
    with celery.connection_for_write() as connection:
        waiting = connection.default_channel.queue_declare(queue=queue, passive=True).message_count
    assert waiting == 1  # the waiting one's message, once
    with factory() as session:
        status = {name: session.get_one(Evaluation, i).status for name, i in made.items()}
        lost = session.get_one(Evaluation, made["lost"])
    assert status == {"fresh": "queued", "waiting": "queued", "lost": "failed", "running": "running"}
    assert lost.error == "the evaluation's worker was lost" and lost.finished_at is not None


@pytest.fixture(autouse=True)
def _forget_what_was_resent() -> None:
    worker_evaluations._resent.clear()
