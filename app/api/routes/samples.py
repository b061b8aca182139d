"""/v1/jobs/{id}/samples: a generative job's samples of its latest epoch, for the dashboard's scatter or
image grid."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import OwnerDep, SessionDep
from app.api.jobs import get_job
from app.api.problems import problem
from app.api.schemas import SamplesPublic

router = APIRouter(prefix="/v1/jobs", tags=["samples"])


@router.get("/{job_id}/samples", response_model=SamplesPublic)
def read_samples(job_id: str, session: SessionDep, owner: OwnerDep) -> SamplesPublic | JSONResponse:
    """Rewritten at every epoch's end from the same latent vectors, so successive answers show how the
    generator moves them. 404 for a network that generates nothing and before a GAN's first epoch."""
    job = get_job(session=session, job_id=job_id, owner=owner)
    if job.latest_samples is None:
        return problem(
            404,
            "Not found",
            f"job {job_id} has no generated samples: only generative "
            f"architectures (gan) have them, from the end of their first epoch (arch {job.arch}, "
            f"epoch {job.epoch})",
        )
    return SamplesPublic(job_id=job.id, **job.latest_samples)
