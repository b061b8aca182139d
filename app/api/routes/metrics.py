"""/v1/jobs/{id}/metrics: per-name series, downsampled on request."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import OwnerDep, SessionDep
from app.api.jobs import get_job
from app.api.metrics_series import downsampled_reads, read_series
from app.api.schemas import MetricsPublic

router = APIRouter(prefix="/v1/jobs", tags=["metrics"])


@router.get("/{job_id}/metrics", response_model=MetricsPublic)
def read_metrics(
    job_id: str,
    session: SessionDep,
    owner: OwnerDep,
    name: Annotated[
        list[str] | None, Query(max_length=50, description="series names; all by default")
    ] = None,
    after_step: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="only steps after this one")
    ] = None,
    max_points: Annotated[int | None, Query(ge=2, le=100_000, description="downsample each series")] = None,
) -> MetricsPublic:
    job = get_job(session=session, job_id=job_id, owner=owner)
    if max_points is None:
        series, downsampled = read_series(
            session=session, job_id=job_id, names=name or [], after_step=after_step
        )
    else:
        series, downsampled = downsampled_reads.read(
            session=session, job=job, names=name or [], after_step=after_step, max_points=max_points
        )
    return MetricsPublic(job_id=job_id, series=series, downsampled=downsampled)
