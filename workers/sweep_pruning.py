"""Pruning a sweep's trial from inside its training process: after each epoch the runner's hook reports the
objective into the trial's Optuna trial and asks the sweep's pruner whether to stop. A trial to prune stops
like a cancel (its checkpoint and metrics kept) and its job ends as `pruned`.

The trial is found again from the job's row (sweep, trial number) on every attempt, so a resumed job reports
into the same Optuna trial; an epoch it reports again is ignored by Optuna. Pruning is advice: when Optuna
cannot be reached, training goes on and the trial simply is not pruned."""

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select

from app.db.tables import Job, Sweep
from models.sweep_space import SweepSpec
from models.train import EpochReport
from workers.job_store import JobStore

log = logging.getLogger("nnforge.worker")

EpochCallback = Callable[[EpochReport], None]


def trial_reporter(store: JobStore, pruned: threading.Event) -> EpochCallback | None:
    """For a trial of a sweep with a pruner, the epoch-end callback that reports and sets `pruned` when the
    pruner says so; None for any other job (which never loads Optuna)."""
    with store.factory() as session:
        row = session.execute(
            select(Job.trial_number, Sweep.id, Sweep.spec, Sweep.objective)
            .join(Sweep, Sweep.id == Job.sweep_id)
            .where(Job.id == store.job_id)
        ).first()
        database_url = session.get_bind().engine.url.render_as_string(hide_password=False)
    if row is None or row.trial_number is None:
        return None
    spec = SweepSpec.model_validate(row.spec)
    if spec.pruner == "none":
        return None
    try:
        import optuna

        from workers import sweep_study

        study = optuna.load_study(
            study_name=sweep_study.study_name(row.id),
            storage=sweep_study.storage_for(database_url),
            pruner=sweep_study.pruner(spec),
        )
        trial = sweep_study.trial_handle(study, row.trial_number)
    except Exception:
        log.exception("job %s: its sweep's study cannot be opened; the trial trains unpruned", store.job_id)
        return None
    metric = row.objective["metric"]

    def report(epoch: EpochReport) -> None:
        value = epoch.metrics.get(metric)
        if value is None or not sweep_study.decides_at(spec, epoch.epoch):
            return
        try:
            trial.report(value, epoch.epoch)
            if not epoch.final and trial.should_prune():
                log.info(
                    "job %s: pruned by its sweep's %s pruner at epoch %d",
                    store.job_id,
                    spec.pruner,
                    epoch.epoch,
                )
                pruned.set()
        except Exception:
            log.exception("job %s: reporting to its sweep failed; training goes on", store.job_id)

    return report
