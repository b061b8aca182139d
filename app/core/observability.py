"""Prometheus `/metrics`: HTTP metrics per route template (prometheus-fastapi-instrumentator) and, read
from the database at scrape time, jobs by status, the queued jobs per queue, and each running job's latest
epoch duration and throughput. Each app has its own registry, so several apps in one process (the tests)
do not collide.

Epoch timings are gauges of the value the worker stored at the job's latest epoch, not histograms: the API
only sees that value, once per scrape, and counting it again at every scrape would invent observations. A
job's series exist while it runs (a handful at a time), so the `job_id` label stays bounded."""

from collections.abc import Iterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db.job_state import JobStatus
from app.db.tables import Job


class JobsCollector(Collector):
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.factory() as session:
                by_status = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                queued = dict(
                    session.execute(
                        select(Job.queue, func.count())
                        .where(Job.status == JobStatus.QUEUED)
                        .group_by(Job.queue)
                    ).all()
                )
                timed = session.execute(
                    select(Job.id, Job.arch, Job.epoch_seconds, Job.samples_per_second)
                    .where(Job.status == JobStatus.RUNNING)
                    .order_by(Job.id)
                ).all()
        except SQLAlchemyError:  # a scrape during a database outage reports HTTP metrics only
            return
        jobs = GaugeMetricFamily("nnforge_jobs", "Jobs by status", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status, 0))
        yield jobs
        depth = GaugeMetricFamily("nnforge_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        for queue in sorted({"cpu", "gpu", "any"} | set(queued)):
            depth.add_metric([queue], queued.get(queue, 0))
        yield depth
        seconds = GaugeMetricFamily(
            "nnforge_job_epoch_seconds",
            "Wall time of the latest epoch of each running job (training and its evaluation)",
            labels=["job_id", "arch"],
        )
        speed = GaugeMetricFamily(
            "nnforge_job_samples_per_second",
            "Training samples per second over the latest epoch of each running job",
            labels=["job_id", "arch"],
        )
        for job_id, arch, epoch_seconds, samples_per_second in timed:  # None before a job's first epoch
            if epoch_seconds is not None:
                seconds.add_metric([job_id, arch], epoch_seconds)
            if samples_per_second is not None:
                speed.add_metric([job_id, arch], samples_per_second)
        yield seconds
        yield speed


def install_metrics(app: FastAPI, factory: sessionmaker[Session]) -> None:
    registry = CollectorRegistry()
    registry.register(JobsCollector(factory))
    instrumentator = Instrumentator(
        registry=registry,
        excluded_handlers=["/metrics", "/static/.*"],
        should_exclude_streaming_duration=True,  # an event stream lasts hours
    )
    instrumentator.instrument(app).expose(app, include_in_schema=False)
