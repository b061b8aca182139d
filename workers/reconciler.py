"""The reconciler: a loop in every worker's main process (no new service) that keeps the database and the
broker honest. It takes back running jobs whose lease lapsed (their runner died) and re-sends queued jobs
the broker lost (a restarted Redis, a message lost with a killed worker on the filesystem transport)."""

import logging
import threading
import time
from datetime import timedelta

from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.core.queue import publish_job
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.engine import transaction
from app.db.tables import Job

log = logging.getLogger("nnforge.reconciler")


class Reconciler:
    def __init__(self, factory: sessionmaker[Session], celery: Celery, settings: Settings) -> None:
        self.factory, self.celery, self.settings = factory, celery, settings
        # After the database comes back, heartbeats are stale through no runner's fault: judge leases only
        # after an uninterrupted view of our own.
        self.connected_since: float | None = None

    def run_once(self) -> dict[str, int]:
        try:
            with self.factory() as session:
                session.execute(select(1))
        except OperationalError:
            self.connected_since = None
            return {}
        if self.connected_since is None:
            self.connected_since = time.monotonic()
        counts = {"requeued": 0, "failed": 0, "republished": 0}
        # Two lease periods: one for runners to renew after an outage (their retries back off up to 2 s).
        if time.monotonic() - self.connected_since >= 2 * self.settings.lease_seconds:
            counts |= self.take_back_lapsed_leases()
        counts["republished"] = self.republish_lost_messages()
        return counts

    def take_back_lapsed_leases(self) -> dict[str, int]:
        lapsed_before = utcnow() - timedelta(seconds=self.settings.lease_seconds)
        counts = {"requeued": 0, "failed": 0}
        with self.factory() as session:
            lapsed = session.execute(
                select(Job.id, Job.version, Job.attempt, Job.max_restarts, Job.queue).where(
                    Job.status == "running", Job.heartbeat_at < lapsed_before
                )
            ).all()
        for job_id, version, attempt, max_restarts, queue in lapsed:
            retry = attempt <= max_restarts
            values = {"status": "queued"} if retry else {"status": "failed", "finished_at": utcnow()}
            with transaction(self.factory) as session:
                done = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "running", Job.version == version)
                    .values(
                        version=Job.version + 1,
                        lease_owner=None,
                        error_type="worker_lost",
                        error_message=f"no heartbeat for {self.settings.lease_seconds:g} s: worker lost",
                        **values,
                    )
                )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                continue  # it moved on meanwhile (finished, or another reconciler took it)
            if retry:
                publish_job(self.celery, job_id, queue)
                counts["requeued"] += 1
                log.warning("job %s: lease lapsed; requeued for attempt %d", job_id, attempt + 1)
            else:
                counts["failed"] += 1
                log.error("job %s: lease lapsed after %d attempts; failed", job_id, attempt)
        return counts

    def republish_lost_messages(self) -> int:
        """When a queue holds fewer messages than it has queued jobs, send every queued job of it again."""
        with self.factory() as session:
            queued = dict(
                session.execute(
                    select(Job.queue, func.count()).where(Job.status == "queued").group_by(Job.queue)
                ).all()
            )
        sent = 0
        for queue, jobs in queued.items():
            if self._messages_in(queue) >= jobs:
                continue
            with self.factory() as session:
                ids = session.scalars(
                    select(Job.id).where(Job.status == "queued", Job.queue == queue).order_by(Job.created_at)
                ).all()
            for job_id in ids:
                publish_job(self.celery, job_id, queue)
            sent += len(ids)
            log.warning("queue %s held fewer messages than its %d queued jobs; re-sent them", queue, jobs)
        return sent

    def _messages_in(self, queue: str) -> int:
        try:
            with self.celery.connection_for_write() as connection:
                declared = connection.default_channel.queue_declare(queue=queue, passive=True)
                return int(declared.message_count)
        except Exception:  # a queue the broker does not know (it restarted empty) holds nothing
            return 0


class ReconcilerThread(threading.Thread):
    def __init__(self, reconciler: Reconciler, interval: float) -> None:
        super().__init__(name="reconciler", daemon=True)
        self.reconciler, self.interval = reconciler, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.reconciler.run_once()
            except Exception:
                log.exception("reconciliation failed; trying again in %.0f s", self.interval)
