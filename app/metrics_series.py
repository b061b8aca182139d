"""Reading metric series back, with min/max-preserving downsampling for long series."""

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import Metric
from app.schemas import MetricPoint


def read_series(
    *, session: Session, job_id: str, names: Sequence[str], after_step: int | None
) -> dict[str, list[MetricPoint]]:
    query = select(Metric.name, Metric.step, Metric.epoch, Metric.value, Metric.time).where(
        Metric.job_id == job_id
    )
    if names:
        query = query.where(Metric.name.in_(names))
    if after_step is not None:
        query = query.where(Metric.step > after_step)
    series: dict[str, list[MetricPoint]] = defaultdict(list)
    for name, step, epoch, value, time in session.execute(query.order_by(Metric.name, Metric.step)):
        series[name].append(MetricPoint(step=step, epoch=epoch, value=value, time=time))
    return dict(series)


def downsample(points: list[MetricPoint], max_points: int) -> list[MetricPoint]:
    """At most `max_points` points: the minimum and maximum of each of max_points/2 step buckets, in order,
    so spikes survive (averaging would hide a divergence)."""
    if len(points) <= max_points:
        return points
    buckets = max(1, max_points // 2)
    kept: list[MetricPoint] = []
    for b in range(buckets):
        chunk = points[b * len(points) // buckets : (b + 1) * len(points) // buckets]
        if not chunk:
            continue
        low = min(chunk, key=lambda p: p.value)
        high = max(chunk, key=lambda p: p.value)
        kept += sorted({id(low): low, id(high): high}.values(), key=lambda p: p.step)
    return kept
