"""Periodic upkeep run by every worker's reconciler: deleting finished jobs past RETENTION_DAYS and giving
freed SQLite pages back to the file system. Each pass is bounded (JOBS_PER_PASS jobs, one short
transaction each; RECLAIMS_PER_PASS calls of PAGES_PER_CALL pages, each its own short write), so a backlog
drains over several passes instead of one long one, and other writers get in between.
Workers may run it at once: a job two of them delete goes once, the other finds nothing."""

import logging
from collections import Counter
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.deletion import delete_finished_job, expired_jobs
from app.db.space import PAGES_PER_CALL, reclaim_space

JOBS_PER_PASS = 20
RECLAIMS_PER_PASS = 16  # up to 64 MiB of SQLite pages per pass
log = logging.getLogger("nnforge.maintenance")


def expire_finished_jobs(factory: sessionmaker[Session], *, retention_days: float, limit: int) -> int:
    """Delete up to `limit` jobs that finished more than `retention_days` ago; how many went."""
    with factory() as session:
        expired = expired_jobs(
            session, finished_before=utcnow() - timedelta(days=retention_days), limit=limit
        )
    deleted = 0
    for job_id, owner in expired:
        with factory() as session:  # closed without a commit: rolled back
            if delete_finished_job(session, job_id=job_id, owner=owner):
                session.commit()
                deleted += 1
    if deleted:
        log.info("deleted %d jobs finished more than %g days ago (RETENTION_DAYS)", deleted, retention_days)
    return deleted


def run_maintenance(
    factory: sessionmaker[Session], *, retention_days: float | None, jobs_per_pass: int = JOBS_PER_PASS
) -> Counter[str]:
    """One pass: counts of the jobs `expired` and the SQLite pages `reclaimed`."""
    counts: Counter[str] = Counter()
    if retention_days is not None:
        counts["expired"] = expire_finished_jobs(factory, retention_days=retention_days, limit=jobs_per_pass)
    for _ in range(RECLAIMS_PER_PASS):
        reclaimed = reclaim_space(factory)
        counts["reclaimed"] += reclaimed
        if reclaimed < PAGES_PER_CALL:
            break
    return counts
