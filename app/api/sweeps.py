"""Sweep logic behind the routes: create (check the space's corners like POSTed jobs, insert), read with its
trials' counts and best, list, cancel. The driver that queues trials runs in the workers
(workers/sweep_driver.py); the API only stores the sweep and sends its first pass. Torch-free: each corner's
dry check runs in the bounded child a POSTed job's does (app/api/dry_runs.py)."""

import base64
import binascii
import json
import uuid
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.api.dry_runs import bounded_dry_check
from app.api.jobs import JobConflict
from app.api.problems import NotFound
from app.api.sweep_schemas import (
    BestTrial,
    SweepListQuery,
    SweepPublic,
    TrialCounts,
    TrialPublic,
    TrialsQuery,
)
from app.core.queue import QUEUE_FOR_DEVICE
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.sweeps import (
    SweepStatus,
    Trial,
    best_trial,
    cancel_sweep,
    dataset_info,
    lock_sweep,
    trial_counts,
    trials_of,
)
from app.db.tables import Sweep
from models.cost import CostLimits, check_cost, estimate
from models.dataset_info import DatasetInfo
from models.errors import SpecError, SpecIssue
from models.specs import DatasetRef, JobSpec, dotted_path, issue_reason, parse_job_spec
from models.sweep_space import SweepObjective, SweepSpec, corner_assignments, issue_at, realize


def _base_dataset(session: Session, sweep_in: SweepSpec, owner: str) -> tuple[DatasetInfo, str | None]:
    raw = sweep_in.base.get("dataset")
    try:
        ref = DatasetRef.model_validate(raw)
    except ValidationError as error:
        err = error.errors(include_url=False)[0]
        field = dotted_path(raw, err["loc"])
        raise SpecError.single(
            "base.dataset" + (f".{field}" if field != "spec" else ""), err.get("input"), issue_reason(err)
        ) from None
    if ref.path is not None:
        raise SpecError.single("base.dataset.path", ref.path, "the service reads no local paths: upload it")
    return dataset_info(session, ref=ref, owner=owner)


def _assigned(assignment: dict[str, Any], path: str, _dist: object) -> Any:
    return assignment[path]


def check_corners(
    sweep_in: SweepSpec, info: DatasetInfo, settings: Settings
) -> tuple[SweepObjective, JobSpec]:
    """Validate, cost-check and dry-run (in the bounded child) the job spec of each corner of the space
    (every choice, each range's low and high) as a POSTed job's; a problem is a 422 naming the space's path
    (or the base's field). Returns the sweep's objective (the base job's when not given) and the first
    corner's spec."""
    corners = corner_assignments(sweep_in)
    objective, first = sweep_in.objective, None
    issues: dict[tuple[str, str], SpecIssue] = {}
    over_at_first: set[str] = set()  # the estimate's fields over a limit with every path at its first value
    for index, (varied, assignment) in enumerate(corners):
        checked = sweep_in.model_copy(update={"objective": objective})
        raw, params = realize(checked, partial(_assigned, assignment))
        try:
            spec = parse_job_spec(raw)
            over = _over_cost(spec, info, settings)  # first: the estimate bounds the dry run
            if index == 0:
                over_at_first = {issue.field for issue in over}
            found = [
                _cost_issue_at(sweep_in, issue, params, varied, blame=issue.field not in over_at_first)
                for issue in over
            ]
            dry = None if found else bounded_dry_check(spec, info, settings)
        except SpecError as error:
            found, dry = [issue_at(sweep_in, issue, params, varied) for issue in error.issues], None
        for named in found:
            issues.setdefault((named.field, named.reason), named)
        if dry is None:
            continue
        if objective is None and dry.objective is not None:  # the base's, decided by its first corner
            objective = SweepObjective(
                metric=dry.objective.metric,
                direction="maximize" if dry.objective.mode == "max" else "minimize",
            )
        first = first or spec
    if issues:
        raise SpecError(list(issues.values()))
    if objective is None or first is None:
        raise SpecError.single("objective", None, "the base job has no objective: give objective.metric")
    if sweep_in.objective is None:  # every corner again, now with the objective every trial will have
        check_corners(sweep_in.model_copy(update={"objective": objective}), info, settings)
    return objective, first


def _over_cost(spec: JobSpec, info: DatasetInfo, settings: Settings) -> list[SpecIssue]:
    try:
        check_cost(estimate(spec, info), cost_limits(settings))
    except SpecError as over:
        return over.issues
    return []


def _cost_issue_at(
    sweep_in: SweepSpec, issue: SpecIssue, params: dict[str, Any], varied: str, *, blame: bool
) -> SpecIssue:
    """An estimate is the whole spec's: over a limit only at a corner that moved `varied` from its first
    value (`blame`), that path is why, whatever field the estimate names."""
    named = issue_at(sweep_in, issue, params, varied)
    if named.field.startswith("space.") or not blame:
        return named
    return SpecIssue(f"space.{varied}", params[varied], f"{issue.reason} (at {issue.field})")


def create_sweep(*, session: Session, sweep_in: SweepSpec, owner: str, settings: Settings) -> Sweep:
    info, _ = _base_dataset(session, sweep_in, owner)
    objective, first = check_corners(sweep_in, info, settings)
    sweep = Sweep(
        id=str(uuid.uuid4()),
        owner=owner,
        name=sweep_in.name,
        spec=sweep_in.model_dump(mode="json", exclude_unset=True),
        objective=objective.model_dump(),
        trials=sweep_in.trials,
        parallel=sweep_in.parallel,
        queue=QUEUE_FOR_DEVICE[first.training.device],
        status=SweepStatus.RUNNING,
        told=0,
        created_at=utcnow(),
    )
    session.add(sweep)
    session.flush()
    return sweep


def cost_limits(settings: Settings) -> CostLimits:
    return CostLimits(
        max_step_flops=settings.max_step_flops,
        max_memory_bytes=settings.max_job_memory_bytes,
        max_dry_run_flops=settings.max_dry_run_flops,
    )


def to_public(sweep: Sweep, trials: list[Trial]) -> SweepPublic:
    best = best_trial(sweep, trials)
    return SweepPublic(
        id=sweep.id,
        name=sweep.name,
        status=SweepStatus(sweep.status),
        spec=sweep.spec,
        objective=SweepObjective.model_validate(sweep.objective),
        trials=sweep.trials,
        parallel=sweep.parallel,
        counts=TrialCounts(**trial_counts(trials)),
        best=BestTrial(number=best.number, job_id=best.job_id, value=best.value, params=best.params)
        if best is not None and best.value is not None
        else None,
        best_spec=best.spec if best is not None else None,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
    )


def read_sweep(session: Session, sweep: Sweep) -> SweepPublic:
    return to_public(sweep, trials_of(session, sweep))


def sorted_trials(trials: list[Trial], query: TrialsQuery) -> list[TrialPublic]:
    if query.sort == "number":
        ordered = sorted(trials, key=lambda t: t.number)
    else:
        sign = -1.0 if query.sort == "-value" else 1.0
        ordered = sorted(trials, key=lambda t: (t.value is None, sign * (t.value or 0.0), t.number))
    return [
        TrialPublic(
            number=t.number,
            job_id=t.job_id,
            params=t.params,
            state=t.state,
            value=t.value,
            epochs_run=t.epochs_run,
        )
        for t in ordered
    ]


def list_sweeps(*, session: Session, owner: str, query: SweepListQuery) -> tuple[list[Sweep], str | None]:
    """The owner's sweeps, newest first, a page at a time."""
    where = [Sweep.owner == owner]
    if query.status is not None:
        where.append(Sweep.status == query.status)
    if query.cursor is not None:
        created_at, sweep_id = _decode(query.cursor)
        where.append(
            or_(Sweep.created_at < created_at, and_(Sweep.created_at == created_at, Sweep.id < sweep_id))
        )
    rows = list(
        session.scalars(
            select(Sweep)
            .where(*where)
            .order_by(Sweep.created_at.desc(), Sweep.id.desc())
            .limit(query.limit + 1)
        )
    )
    more, rows = len(rows) > query.limit, rows[: query.limit]
    return rows, _encode(rows[-1]) if more else None


def _encode(sweep: Sweep) -> str:
    text = json.dumps([sweep.created_at.isoformat(), sweep.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, sweep_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created_at), str(sweep_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise SpecError.single("cursor", cursor, "not a cursor this API returned") from None


def get_sweep(*, session: Session, sweep_id: str, owner: str) -> Sweep:
    """The owner's sweep; 404 for any other."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.owner != owner:
        raise NotFound("sweep", sweep_id)
    return sweep


def cancel(*, session: Session, sweep_id: str, owner: str) -> Sweep:
    """Cancel the sweep and its queued and running trials; 409 when it has ended."""
    get_sweep(session=session, sweep_id=sweep_id, owner=owner)
    sweep = lock_sweep(session, sweep_id=sweep_id)
    if sweep is None or sweep.status != SweepStatus.RUNNING:
        raise JobConflict(f"sweep is already {sweep.status if sweep else 'gone'}")
    cancel_sweep(session, sweep=sweep)
    return sweep
