"""Reading metric series back, with min/max-preserving downsampling of long series done by the database,
and a cache of recent downsampled reads."""

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, tuple_, union
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from app.api.schemas import MetricPoint
from app.db.tables import Job, Metric, MetricBlock

Series = tuple[dict[str, list[MetricPoint]], bool]
CACHED_READS = 256


def read_series(
    *,
    session: Session,
    job_id: str,
    names: Sequence[str],
    after_step: int | None,
    max_points: int | None = None,
) -> tuple[dict[str, list[MetricPoint]], bool]:
    """Each series in step order, and whether any was downsampled. With `max_points`, a longer series keeps
    the minimum and the maximum of each of max_points/2 equal step buckets, in order, so spikes survive
    (averaging would hide a divergence). The database picks them (window functions, PostgreSQL and SQLite
    alike): a 100k-point series sends 500 rows, not 100k."""
    query = select(Metric.name, Metric.step, Metric.epoch, Metric.value, Metric.time).where(
        Metric.job_id == job_id
    )
    if names:
        query = query.where(Metric.name.in_(names))
    if after_step is not None:
        query = query.where(Metric.step > after_step)
    if max_points is None:
        return _grouped(session.execute(query.order_by(Metric.name, Metric.step)).all()), False
    if after_step is None and session.get_bind().dialect.name == "postgresql":
        from_blocks = _downsampled_from_blocks(session, job_id, names, max_points)
        if from_blocks is not None:
            return from_blocks
    numbered = query.add_columns(
        (func.row_number().over(partition_by=Metric.name, order_by=Metric.step) - 1).label("i"),
        func.count().over(partition_by=Metric.name).label("n"),
    ).subquery()
    buckets = max(1, max_points // 2)
    # Point i of n falls in bucket b when b·n//buckets <= i < (b+1)·n//buckets, i.e. b = ((i+1)·buckets−1)//n.
    bucket = ((numbered.c.i + 1) * buckets - 1) // numbered.c.n
    ranked = select(
        numbered,
        func.row_number()
        .over(partition_by=(numbered.c.name, bucket), order_by=(numbered.c.value, numbered.c.step))
        .label("low"),
        func.row_number()
        .over(partition_by=(numbered.c.name, bucket), order_by=(numbered.c.value.desc(), numbered.c.step))
        .label("high"),
    ).subquery()
    kept = select(
        ranked.c.name, ranked.c.step, ranked.c.epoch, ranked.c.value, ranked.c.time, ranked.c.n
    ).where(or_(ranked.c.n <= max_points, ranked.c.low == 1, ranked.c.high == 1))
    rows = session.execute(kept.order_by(ranked.c.name, ranked.c.step)).all()
    return _grouped(rows), any(row.n > max_points for row in rows)


def _downsampled_from_blocks(
    session: Session, job_id: str, names: Sequence[str], max_points: int
) -> Series | None:
    """The same downsampling from `metric_block` (per 32 steps: count, lowest and highest point), so a long
    series costs a read of its blocks and of the points kept, not a ranking of every row; a bucket's edges
    fall on block edges. None when some long series has fewer than two blocks per bucket: the caller then
    ranks the rows."""
    buckets = max(1, max_points // 2)
    mine = MetricBlock.job_id == job_id
    if names:
        mine = mine & MetricBlock.name.in_(names)
    sizes = session.execute(
        select(MetricBlock.name, func.sum(MetricBlock.n), func.count()).where(mine).group_by(MetricBlock.name)
    ).all()
    if any(total > max_points and blocks < 2 * buckets for _, total, blocks in sizes):
        return None
    whole = [name for name, total, _ in sizes if total <= max_points]
    long = [name for name, total, _ in sizes if total > max_points]
    conditions: list[ColumnElement[bool]] = [Metric.name.in_(whole)] if whole else []
    if long:
        conditions.append(tuple_(Metric.name, Metric.step).in_(_bucket_extremes(mine, long, buckets)))
    if not conditions:
        return {}, False
    points = select(Metric.name, Metric.step, Metric.epoch, Metric.value, Metric.time).where(
        Metric.job_id == job_id, or_(*conditions)
    )
    return _grouped(session.execute(points.order_by(Metric.name, Metric.step)).all()), bool(long)


def _bucket_extremes(mine: ColumnElement[bool], names: list[str], buckets: int) -> Select[Any]:
    """(name, step) of the lowest and the highest point of each bucket of about total/buckets points, from
    the blocks: a block falls in the bucket of the points before it (a running sum)."""
    before = func.sum(MetricBlock.n).over(partition_by=MetricBlock.name, order_by=MetricBlock.block)
    total = func.sum(MetricBlock.n).over(partition_by=MetricBlock.name)
    placed = (
        select(
            MetricBlock.name,
            ((before - MetricBlock.n) * buckets // total).label("bucket"),
            MetricBlock.lo_step,
            MetricBlock.lo_value,
            MetricBlock.hi_step,
            MetricBlock.hi_value,
        )
        .where(mine, MetricBlock.name.in_(names))
        .cte("placed")  # read once for both ends (PostgreSQL materialises a CTE used twice)
    )
    lowest = (
        select(placed.c.name, placed.c.lo_step.label("step"))
        .ext(distinct_on(placed.c.name, placed.c.bucket))
        .order_by(placed.c.name, placed.c.bucket, placed.c.lo_value, placed.c.lo_step)
    )
    highest = (
        select(placed.c.name, placed.c.hi_step.label("step"))
        .ext(distinct_on(placed.c.name, placed.c.bucket))
        .order_by(placed.c.name, placed.c.bucket, placed.c.hi_value.desc(), placed.c.hi_step)
    )
    return union(lowest, highest)  # type: ignore[return-value]


def _grouped(rows: Sequence[Any]) -> dict[str, list[MetricPoint]]:  # rows: name, step, epoch, value, time
    series: dict[str, list[MetricPoint]] = defaultdict(list)
    for row in rows:
        series[row.name].append(MetricPoint(step=row.step, epoch=row.epoch, value=row.value, time=row.time))
    return dict(series)


class DownsampledReads:
    """Recent downsampled reads, kept while their job row says its metrics are unchanged. Every metrics write
    (workers.job_store.write_progress) moves the job's `heartbeat_at` in the same transaction, so a finished
    job's entry stays valid and a running job's until its next write or heartbeat. (A resumed attempt drops
    rows after claiming the job; until its next heartbeat, a second later, a read may still show them.) A
    dashboard re-reading a 100k-point series then costs a job lookup, not a scan of 100k rows."""

    def __init__(self, size: int = CACHED_READS) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, tuple[Hashable, Series]] = OrderedDict()
        self.lock = threading.Lock()

    def read(
        self, *, session: Session, job: Job, names: Sequence[str], after_step: int | None, max_points: int
    ) -> Series:
        key = (job.id, tuple(sorted(names)), after_step, max_points)
        version = (job.status, job.attempt, job.heartbeat_at, job.step)
        with self.lock:
            cached = self.entries.get(key)
            if cached is not None and cached[0] == version:
                self.entries.move_to_end(key)
                return cached[1]
        series = read_series(
            session=session, job_id=job.id, names=names, after_step=after_step, max_points=max_points
        )
        with self.lock:
            self.entries[key] = (version, series)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return series


downsampled_reads = DownsampledReads()
