"""The reconciler: a loop in every worker's main process (no new service) that keeps the database and the
broker honest. It takes back running jobs whose lease lapsed (their runner died) and re-sends queued jobs
the broker lost (a restarted Redis, a message lost with a killed worker on the filesystem transport).
Last in each pass, the upkeep of app/core/maintenance.py (RETENTION_DAYS, SQLite's free pages)."""

import logging
import threading
import time
from collections import Counter

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.core.maintenance import run_maintenance
from app.core.queue import publish_job
from app.core.settings import Settings
from app.db import job_state
from app.db.engine import transaction
from app.db.job_state import JobStatus
from app.db.tables import Job
from workers.evaluations import settle_stale_evaluations
from workers.sweep_driver import wake_sweeps

log = logging.getLogger("nnforge.reconciler")


class Reconciler:
    def __init__(self, factory: sessionmaker[Session], celery: Celery, settings: Settings) -> None:
        self.factory, self.celery, self.settings = factory, celery, settings
        # After the database comes back, heartbeats are stale through no runner's fault: judge leases only
        # after an uninterrupted view of our own. A start that reaches the database at once saw no outage
        # and judges leases from its first pass, so a killed worker's job is taken back within
        # LEASE_SECONDS + RECONCILE_SECONDS of the kill by the worker that replaced it.
        self.connected_since: float | None = None
        self.outage_seen = False
        # Queues short of messages at the last pass. A message a worker has fetched but not yet claimed its
        # job for is missing from the count for a moment: only a shortfall seen twice in a row is a loss.
        self.short_queues: set[str] = set()

    def run_once(self) -> Counter[str]:
        """Counts of the jobs taken back, by the status they were left in, and of the messages re-sent."""
        try:
            with self.factory() as session:
                session.execute(select(1))
        except OperationalError:
            self.connected_since, self.outage_seen = None, True
            return Counter()
        if self.connected_since is None:
            grace_served = 0.0 if self.outage_seen else 2 * self.settings.lease_seconds
            self.connected_since = time.monotonic() - grace_served
        counts: Counter[str] = Counter()
        # Two lease periods: one for runners to renew after an outage (their retries back off up to 2 s).
        if time.monotonic() - self.connected_since >= 2 * self.settings.lease_seconds:
            counts.update(self.take_back_lapsed_leases())
        counts["republished"] = self.republish_lost_messages()
        # Sweeps with something to do that no driver pass has looked at lately (workers/sweep_driver.py).
        idle = 3 * self.settings.reconcile_seconds
        counts["sweeps_woken"] = wake_sweeps(self.factory, self.celery, idle_seconds=idle)
        counts.update(settle_stale_evaluations(self.factory, self.celery))  # workers/evaluations.py
        counts.update(run_maintenance(self.factory, retention_days=self.settings.retention_days))
        return counts

    def take_back_lapsed_leases(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        message = f"no heartbeat for {self.settings.lease_seconds:g} s: worker lost"
        with self.factory() as session:
            lapsed = job_state.lapsed_jobs(session, lease_seconds=self.settings.lease_seconds)
        for job_id, version in lapsed:
            with transaction(self.factory) as session:
                settled = job_state.take_back_lapsed(session, job_id=job_id, version=version, message=message)
            if settled is None:
                continue  # it moved on meanwhile (finished, or another reconciler took it)
            counts[settled.status] += 1
            if settled.status == JobStatus.QUEUED:
                publish_job(self.celery, job_id, settled.queue)
                log.warning("job %s: lease lapsed; requeued for attempt %d", job_id, settled.attempt + 1)
            else:
                log.error("job %s: lease lapsed after %d attempts; failed", job_id, settled.attempt)
        return counts

    def republish_lost_messages(self) -> int:
        """When a queue holds fewer messages than it has queued jobs at two passes in a row, send every queued
        job of it again."""
        with self.factory() as session:
            queued = dict(
                session.execute(
                    select(Job.queue, func.count()).where(Job.status == JobStatus.QUEUED).group_by(Job.queue)
                ).all()
            )
        sent, short = 0, set()
        for queue, jobs in queued.items():
            if self._messages_in(queue) >= jobs:
                continue
            if queue not in self.short_queues:
                short.add(queue)  # look again at the next pass
                continue
            with self.factory() as session:
                ids = session.scalars(
                    select(Job.id)
                    .where(Job.status == JobStatus.QUEUED, Job.queue == queue)
                    .order_by(Job.created_at)
                ).all()
            for job_id in ids:
                publish_job(self.celery, job_id, queue)
            sent += len(ids)
            log.warning("queue %s held fewer messages than its %d queued jobs; re-sent them", queue, jobs)
        self.short_queues = short
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
