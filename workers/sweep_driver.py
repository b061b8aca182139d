"""The sweep driver: one pass tells Optuna how ended trials went, asks it for new trials while the sweep has
room (`parallel` active, `trials` in all) and queues each as a job, then ends the sweep when every trial has.

A pass runs in a worker (the Celery task `nnforge.drive_sweep`, sent at POST and by the reconciler, and
right after any job ends), never in the API. Passes are idempotent and serialised per sweep (app.db.sweeps.
lock_sweep), and each trial number has at most one job (a unique index): two workers driving at once queue
each trial once. Optuna's trials are the record of what was asked: a trial asked by a pass that died before
its job committed is queued by the next pass with the parameters it already holds, so no trial is lost.
Optuna's heartbeats do not work with ask-and-tell: the job's lease decides a lost trial, and its resumed job
reports into the same Optuna trial (workers/sweep_pruning.py); a job that failed for good is told FAIL.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.queue import QUEUE_FOR_DEVICE, publish_job, publish_sweep
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.job_state import TERMINAL, JobStatus
from app.db.sweeps import (
    ACTIVE,
    SweepStatus,
    TrialRun,
    dataset_info,
    lock_sweep,
    new_trial_job,
    objective_value,
    queued_count,
    sweeps_to_drive,
)
from app.db.tables import Job, Sweep
from models.cost import CostLimits, check_cost, estimate
from models.dataset_info import DatasetInfo
from models.errors import SpecError
from models.specs import DatasetRef, parse_job_spec
from models.sweep_space import MODE, SweepObjective, SweepSpec, realize, with_value

log = logging.getLogger("nnforge.sweeps")


@dataclass(frozen=True)
class Limits:
    max_restarts: int
    max_queued_per_owner: int
    cost: CostLimits  # a trial's estimate, checked as a POSTed job's


@dataclass(frozen=True)
class _JobRow:
    id: str
    status: JobStatus
    best_metrics: dict[str, float]


def drive(factory: sessionmaker[Session], *, sweep_id: str, database_url: str, limits: Limits) -> list[Job]:
    """One pass over the sweep; returns the jobs it queued (committed), for the caller to send."""
    # Optuna and torch (the dry run) load in the processes that drive, not in every worker, and before the
    # lock: a first pass in a process imports for seconds, which another driver must not wait out.
    import models.dry_check  # noqa: F401
    from workers import sweep_study

    storage = sweep_study.storage_for(database_url)
    with transaction(factory) as session:
        sweep = lock_sweep(session, sweep_id=sweep_id)
        if sweep is None:
            return []
        spec = SweepSpec.model_validate(sweep.spec)
        study = sweep_study.open_study(
            storage,
            sweep_id=sweep.id,
            spec=spec,
            direction=SweepObjective.model_validate(sweep.objective).direction,
        )
        jobs = {
            number or 0: _JobRow(job_id, JobStatus(status), best)
            for number, job_id, status, best in session.execute(
                select(Job.trial_number, Job.id, Job.status, Job.best_metrics).where(Job.sweep_id == sweep.id)
            )
        }
        asked = study.get_trials(deepcopy=False)
        sweep.told = _tell_ended(study, asked, jobs, metric=sweep.objective["metric"])
        queued: list[Job] = []
        if sweep.status == SweepStatus.RUNNING:
            queued = _add_trials(session, sweep, spec, study, asked, jobs, limits)
            _end_when_done(session, sweep)
        sweep.driven_at = utcnow()
    return queued


def _tell_ended(study: Any, asked: list[Any], jobs: dict[int, _JobRow], *, metric: str) -> int:
    """Tell Optuna each ended trial it still thinks is running (telling twice is harmless); returns how many
    trials have ended."""
    import optuna

    running = {t.number for t in asked if t.state == optuna.trial.TrialState.RUNNING}
    ended = 0
    for number, job in jobs.items():
        if job.status not in TERMINAL:
            continue
        ended += 1
        if number not in running:
            continue
        value = objective_value(job.best_metrics, metric)
        if job.status == JobStatus.SUCCEEDED and value is not None:
            study.tell(number, value, skip_if_finished=True)
        elif job.status == JobStatus.PRUNED:
            study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        else:  # failed for good (no attempts left), cancelled, or no objective value
            study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return ended


def _add_trials(
    session: Session,
    sweep: Sweep,
    spec: SweepSpec,
    study: Any,
    asked: list[Any],
    jobs: dict[int, _JobRow],
    limits: Limits,
) -> list[Job]:
    import optuna

    from workers import sweep_study

    def build(trial: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return realize(spec, sweep_study.suggest_with(trial))

    active = sum(job.status in ACTIVE for job in jobs.values())
    room = limits.max_queued_per_owner - queued_count(session, owner=sweep.owner)
    # Asked by a pass that died before its job committed: queued now, with the parameters it holds.
    orphans = [t.number for t in asked if t.number not in jobs and t.state == optuna.trial.TrialState.RUNNING]
    asked, queued = list(asked), []
    base = DatasetRef.model_validate(spec.base.get("dataset"))
    info, dataset_id = dataset_info(session, ref=base, owner=sweep.owner)
    while active < sweep.parallel and room > 0:
        if orphans:
            number = orphans.pop(0)
            raw, params = build(sweep_study.trial_handle(study, number))
        elif len(asked) < sweep.trials:
            trial, (raw, params) = sweep_study.ask(study, spec, asked, build)
            asked.append(trial)
            number = trial.number
        else:
            break
        job = _insert_trial(session, sweep, number, raw, params, info, dataset_id, limits)
        if job.status == JobStatus.QUEUED:
            queued.append(job)
            active, room = active + 1, room - 1
        else:
            study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            sweep.told += 1
        jobs[number] = _JobRow(job.id, JobStatus(job.status), {})
    if room <= 0 and active < sweep.parallel:
        log.info("sweep %s: its owner is at the queued limit; trials wait", sweep.id)
    return queued


def _insert_trial(
    session: Session,
    sweep: Sweep,
    number: int,
    raw: dict[str, Any],
    params: dict[str, Any],
    info: DatasetInfo,
    dataset_id: str | None,
    limits: Limits,
) -> Job:
    """Validate and dry-run the trial's spec like a POSTed job's, then insert it queued, or failed with the
    reason when it cannot run (the API checked the space's corners; a value between them rarely fails)."""
    from models.dry_check import dry_check  # torch, in the task process that drives, on its first pass

    objective = sweep.objective
    raw = with_value(
        raw, "training.objective", {"metric": objective["metric"], "mode": MODE[objective["direction"]]}
    )
    try:
        spec = parse_job_spec(raw)
        check_cost(estimate(spec, info), limits.cost)
        run = TrialRun.of(
            spec,
            info=info,
            queue=QUEUE_FOR_DEVICE[spec.training.device],
            num_parameters=dry_check(spec, info).parameters,
        )
        error = None
    except SpecError as failed:
        log.warning("sweep %s trial %d cannot run: %s", sweep.id, number, failed)
        run, error = TrialRun.unrunnable(raw, queue=sweep.queue), failed
    return new_trial_job(
        session,
        sweep=sweep,
        number=number,
        params=params,
        run=run,
        dataset_id=dataset_id,
        max_restarts=limits.max_restarts,
        error=error,
    )


def _end_when_done(session: Session, sweep: Sweep) -> None:
    rows = session.execute(select(Job.status).where(Job.sweep_id == sweep.id)).scalars().all()
    if len(rows) < sweep.trials or any(JobStatus(s) in ACTIVE for s in rows):
        return
    complete = any(s == JobStatus.SUCCEEDED for s in rows)
    sweep.status = SweepStatus.SUCCEEDED if complete else SweepStatus.FAILED
    sweep.finished_at = utcnow()
    log.info("sweep %s %s after %d trials", sweep.id, sweep.status, len(rows))


_factories: dict[str, sessionmaker[Session]] = {}


def _factory(database_url: str) -> sessionmaker[Session]:
    """The task process's connections for passes, kept between them (a pass is a few tens of statements;
    a connection per pass would add a PostgreSQL login to each)."""
    if database_url not in _factories:
        _factories[database_url] = make_session_factory(make_engine(database_url))
    return _factories[database_url]


def drive_and_send(sweep_id: str, settings: Settings, celery: Celery) -> int:
    """A pass, then a message for each job it queued; returns how many."""
    started = time.perf_counter()
    queued = drive(
        _factory(settings.resolved_database_url),
        sweep_id=sweep_id,
        database_url=settings.resolved_database_url,
        limits=Limits(
            settings.max_restarts,
            settings.max_queued_jobs_per_owner,
            CostLimits(settings.max_step_flops, settings.max_job_memory_bytes, settings.max_dry_run_flops),
        ),
    )
    for job in queued:
        publish_job(celery, job.id, job.queue)
    log.info(
        "sweep %s: a pass queued %d trials in %.2f s", sweep_id, len(queued), time.perf_counter() - started
    )
    return len(queued)


def drive_due(settings: Settings, celery: Celery) -> None:
    """After a job ended on this worker: a pass for each sweep that has something to do (a trial ended, or
    room for one), so its next trial starts without waiting for the reconciler."""
    try:
        with _factory(settings.resolved_database_url)() as session:
            due = sweeps_to_drive(session)
        for sweep_id, _ in due:
            drive_and_send(sweep_id, settings, celery)
    except Exception:  # the reconciler sends the sweep again
        log.exception("a sweep's driver pass failed; the reconciler tries again")


def wake_sweeps(factory: sessionmaker[Session], celery: Celery, *, idle_seconds: float) -> int:
    """The reconciler's part: a driver message for each sweep with something to do that no pass has looked
    at for `idle_seconds` (a lost message, a worker killed mid-pass, an owner back under its limits)."""
    with factory() as session:
        due = sweeps_to_drive(session, idle_seconds=idle_seconds)
    for sweep_id, queue in due:
        publish_sweep(celery, sweep_id, queue)
    return len(due)
