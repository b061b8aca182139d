"""Which of a job's checkpoints are kept: the newest `keep_last` resumable ones and the `keep_best` best by
the job's objective. Pruned in the transaction that stores a new checkpoint, so a job never holds more
than its policy allows, and never loses the newest (what a resume needs)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db.checkpoints import started_from
from app.db.tables import Checkpoint


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int
    keep_best: int
    objective: tuple[str, Literal["min", "max"]] | None  # (metric, mode); None: no best to keep


# An owner at MAX_STORAGE_BYTES_PER_OWNER: a running job keeps training, but keeps its newest checkpoint only.
ONLY_THE_NEWEST = RetentionPolicy(keep_last=1, keep_best=0, objective=None)


@dataclass(frozen=True)
class StoredCheckpoint:
    id: int
    step: int
    end_of_epoch: bool
    resumable: bool
    metrics: dict[str, Any]


def kept(rows: Sequence[StoredCheckpoint], policy: RetentionPolicy) -> set[int]:
    """The ids the policy keeps among `rows` (one job's checkpoints)."""
    if not rows:
        return set()
    by_step = sorted(rows, key=lambda r: (r.step, r.id))
    keep = {by_step[-1].id}  # the newest, always: a resume starts there
    keep |= {r.id for r in [r for r in by_step if r.resumable][-policy.keep_last :]}
    if policy.objective is not None and policy.keep_best:
        metric, mode = policy.objective
        scored = [(float(r.metrics[metric]), r) for r in rows if r.end_of_epoch and metric in r.metrics]
        finite = [(value, r) for value, r in scored if math.isfinite(value)]
        sign = 1 if mode == "min" else -1
        # Ties go to the earlier checkpoint: the best epoch is the first to reach the best value.
        ranked = sorted(finite, key=lambda pair: (sign * pair[0], pair[1].step))
        keep |= {r.id for _, r in ranked[: policy.keep_best]}
    return keep


def prune(session: Session, job_id: str, policy: RetentionPolicy) -> int:
    """Delete the job's checkpoints the policy does not keep; returns how many."""
    columns = (
        Checkpoint.id,
        Checkpoint.step,
        Checkpoint.end_of_epoch,
        Checkpoint.resumable,
        Checkpoint.metrics,
    )
    rows = [
        StoredCheckpoint(*row) for row in session.execute(select(*columns).where(Checkpoint.job_id == job_id))
    ]
    dropped = {r.id for r in rows} - kept(rows, policy) - started_from(session, job_id)  # children's
    if dropped:
        session.execute(delete(Checkpoint).where(Checkpoint.id.in_(dropped)))
    return len(dropped)
