"""`metric_block` (migration 0007): PostgreSQL keeps per-block extremes of every series through whatever
writes `metric`, and a downsampled read of a long series is served from them."""

import math
import random
from collections import defaultdict

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.api.metrics_series import _downsampled_from_blocks, read_series
from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory
from app.db.tables import METRIC_BLOCK_STEPS, Job, Metric, MetricBlock


@pytest.fixture
def session(postgres_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(postgres_url)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


def _job(session: Session) -> str:
    """A job row to hang metrics on (its other columns do not matter here)."""
    template = session.scalars(select(Job).limit(1)).first()
    assert template is not None, "the API tests of this module's database create jobs first"
    job_id = f"blocks-{random.getrandbits(40):x}"
    session.execute(
        insert(Job),
        [{c.name: getattr(template, c.key) for c in Job.__table__.columns} | {"id": job_id}],
    )
    session.commit()
    return job_id


def _write(session: Session, job_id: str, name: str, points: dict[int, float]) -> None:
    now = utcnow()
    rows = [
        {"job_id": job_id, "name": name, "step": s, "epoch": 1, "value": v, "time": now}
        for s, v in points.items()
    ]
    session.execute(insert(Metric), rows)
    session.commit()


def _expected_blocks(session: Session, job_id: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(name, block) -> (n, step of the lowest point, step of the highest), from the rows themselves."""
    rows = session.execute(
        select(Metric.name, Metric.step, Metric.value).where(Metric.job_id == job_id)
    ).all()
    grouped = defaultdict(list)
    for row in rows:
        grouped[(row.name, (row.step - 1) // METRIC_BLOCK_STEPS)].append((row.value, row.step))

    def rank(value: float) -> tuple[bool, float]:
        return (math.isnan(value), 0.0 if math.isnan(value) else value)  # NaN above every number

    return {
        key: (
            len(points),
            min(points, key=lambda p: (*rank(p[0]), p[1]))[1],
            min(points, key=lambda p: (*(-x for x in rank(p[0])), p[1]))[1],
        )
        for key, points in grouped.items()
    }


def _stored_blocks(session: Session, job_id: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    rows = session.execute(select(MetricBlock).where(MetricBlock.job_id == job_id)).scalars()
    return {(b.name, b.block): (b.n, b.lo_step, b.hi_step) for b in rows}


def test_blocks_follow_inserts_in_pieces_nan_and_a_resumes_delete(client, session: Session) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/jobs", json={"dataset": {"name": "moons"}, "model": {"arch": "mlp"}})
    job_id = _job(session)
    rng = random.Random(0)
    values = {s: rng.choice([rng.random(), 0.5, float("nan")]) for s in range(1, 201)}
    for start in range(1, 201, 37):  # statements that split blocks, as successive heartbeats do
        _write(session, job_id, "loss", {s: values[s] for s in range(start, min(start + 37, 201))})
    _write(session, job_id, "val_loss", {s: 1.0 / s for s in range(20, 201, 20)})
    assert _stored_blocks(session, job_id) == _expected_blocks(session, job_id)
    session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.step > 75))  # a resume at step 75
    session.commit()
    assert _stored_blocks(session, job_id) == _expected_blocks(session, job_id)
    _write(session, job_id, "loss", {s: -float(s) for s in range(76, 130)})  # the steps written again
    assert _stored_blocks(session, job_id) == _expected_blocks(session, job_id)


def test_a_long_series_is_downsampled_from_its_blocks(client, session: Session) -> None:  # type: ignore[no-untyped-def]
    client.post("/v1/jobs", json={"dataset": {"name": "moons"}, "model": {"arch": "mlp"}})
    job_id = _job(session)
    values = {s: math.sin(s / 300) for s in range(1, 20_001)}
    values[12_345], values[777] = 40.0, -40.0  # spikes an average would hide
    _write(session, job_id, "loss", values)
    _write(session, job_id, "val_loss", {s: 1.0 / s for s in range(100, 20_001, 100)})  # 200 points
    assert _downsampled_from_blocks(session, job_id, [], 500) is not None  # this read takes the blocks
    series, downsampled = read_series(
        session=session, job_id=job_id, names=[], after_step=None, max_points=500
    )
    loss = series["loss"]
    assert downsampled and 250 <= len(loss) <= 500
    assert [p.step for p in loss] == sorted({p.step for p in loss})
    assert all(p.value == values[p.step] for p in loss)  # real points, not averages
    assert {777, 12_345} <= {p.step for p in loss}
    assert [p.step for p in series["val_loss"]] == list(range(100, 20_001, 100))  # short: every point
    buckets = 250  # each stretch of 20_000/250 steps keeps a point or two
    assert len({(p.step - 1) * buckets // 20_000 for p in loss}) >= buckets * 0.95
