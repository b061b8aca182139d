"""DELETE behind the routes: a finished job, one checkpoint the retention rule does not protect, an upload
no queued or running job uses. Each refuses with a 409 that says what to do instead; the rows themselves
go in app/db/deletion.py."""

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api.jobs import JobConflict, JobNotFound, get_job
from app.api.lineage import children_ids
from app.api.problems import NotFound
from app.db.checkpoints import protected_checkpoint_ids
from app.db.deletion import delete_finished_job, delete_unused_dataset
from app.db.job_state import TERMINAL
from app.db.tables import Checkpoint, Dataset, Job


def delete_job(*, session: Session, job_id: str, owner: str) -> None:
    """Delete a finished job and everything it stored; JobConflict (409) while it is queued or running, or
    while jobs that started from it exist (they name its checkpoint). Its row is locked first, so no child
    is submitted between the check and the delete (create_job locks the parent it resolves)."""
    job = get_job(session=session, job_id=job_id, owner=owner, lock=True)
    if job.status not in TERMINAL:
        raise JobConflict(
            f"job {job_id} is {job.status}: cancel it first (POST /v1/jobs/{job_id}/cancel, or "
            f"`nnforge cancel {job_id}`), then delete it once it is cancelled"
        )
    children = children_ids(session, owner=owner, job_ids=[job_id], limit=6)
    if children:
        raise JobConflict(
            f"jobs started from job {job_id} and need its checkpoint ({', '.join(children[:5])}"
            f"{', …' if len(children) > 5 else ''}): delete them first (GET /v1/jobs?parent={job_id})"
        )
    if not delete_finished_job(session, job_id=job_id, owner=owner):
        session.rollback()  # deleted meanwhile by another request
        raise NotFound("job", job_id)


def delete_checkpoint(*, session: Session, job_id: str, owner: str, checkpoint_id: int) -> None:
    """Delete one checkpoint; JobConflict (409) for a protected one (protected_checkpoint_ids: the newest
    and the best epoch's). The job's row is locked first, so the worker (which locks it to write a
    checkpoint) cannot make another checkpoint the newest or the best between the check and the delete."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.owner != owner:
        raise JobNotFound(job_id)
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.job_id != job.id:
        raise NotFound("checkpoint", checkpoint_id)
    if checkpoint_id in protected_checkpoint_ids(session, job):
        raise JobConflict(
            f"checkpoint {checkpoint_id} is job {job_id}'s newest (what a resume starts from), its best "
            f"epoch's (what `best` downloads) or one that jobs started from (init_from), and is kept while "
            "they are"
        )
    session.delete(checkpoint)


def delete_dataset(*, session: Session, dataset_id: str, owner: str) -> list[str]:
    """Delete an upload; JobConflict (409) while a queued or running job uses it. Returns the finished jobs
    that used it: they keep their checkpoints and read back with `dataset_deleted: true`."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.owner != owner:
        raise NotFound("dataset", dataset_id)
    try:
        deletion = delete_unused_dataset(session, dataset_id=dataset_id, owner=owner)
        active = deletion.active
        session.flush()
    except IntegrityError:  # PostgreSQL: a job started using it after the check (its key refused the delete)
        active = ["a job submitted meanwhile"]
    if active:
        session.rollback()
        raise JobConflict(
            f"dataset {dataset_id} is used by queued or running jobs ({', '.join(active[:5])}"
            f"{', …' if len(active) > 5 else ''}): cancel them or wait for them to end"
        )
    return deletion.released
