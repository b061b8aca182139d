"""Prometheus `/metrics`: HTTP metrics per route template (prometheus-fastapi-instrumentator) and, read
from the database at scrape time, jobs by status and the queued jobs per queue. Each app has its own
registry, so several apps in one process (the tests) do not collide."""

from collections.abc import Iterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db.tables import JOB_STATUSES, Job


class JobsCollector(Collector):
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.factory() as session:
                by_status = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                queued = dict(session.execute(select(Job.queue, func.count()).where(Job.status == "queued")
                                              .group_by(Job.queue)).all())
        except SQLAlchemyError:  # a scrape during a database outage reports HTTP metrics only
            return
        jobs = GaugeMetricFamily("nnforge_jobs", "Jobs by status", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], by_status.get(status, 0))
        yield jobs
        depth = GaugeMetricFamily("nnforge_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        for queue in sorted({"cpu", "gpu", "any"} | set(queued)):
            depth.add_metric([queue], queued.get(queue, 0))
        yield depth


def install_metrics(app: FastAPI, factory: sessionmaker[Session]) -> None:
    registry = CollectorRegistry()
    registry.register(JobsCollector(factory))
    instrumentator = Instrumentator(registry=registry, excluded_handlers=["/metrics", "/static/.*"],
                                    should_exclude_streaming_duration=True)  # an event stream lasts hours
    instrumentator.instrument(app).expose(app, include_in_schema=False)
