"""Optuna for sweeps: where its studies live, a sweep's study with its sampler and pruner, and the space's
paths as Optuna suggestions.

Optuna's tables (and its own Alembic version table) live apart from nnforge's: on PostgreSQL in the schema
`optuna` of the same database (its connections' search_path), on SQLite in a file of their own beside the
database (`nnforge.optuna.db`). nnforge's migrations never see them. Samplers are rebuilt on every pass (a
driver is any worker), seeded by `seed + trial number`, so a sweep's parameters do not depend on which worker
asked for them; TPE runs with `constant_liar` so parallel trials spread out.
"""

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import optuna
import sqlalchemy as sa
from optuna.pruners import BasePruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from models.sweep_space import Choice, Range, Suggest, SweepSpec

OPTUNA_SCHEMA = "optuna"
# ASHA: rungs at epochs 1, 3, 9, 27…; a trial goes on past a rung only in the top third of those that
# reached it. Median: after 2 trials, a trial whose objective is worse than the median of the others' at the
# same epoch stops.
ASHA_MIN_EPOCHS, ASHA_REDUCTION_FACTOR = 1, 3
MEDIAN_STARTUP_TRIALS, MEDIAN_WARMUP_EPOCHS = 2, 0
PRIMITIVE = (str, int, float, bool, type(None))

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger("nnforge.sweeps")
T = TypeVar("T")
_storages: dict[str, RDBStorage] = {}


def study_name(sweep_id: str) -> str:
    return f"nnforge-sweep-{sweep_id}"


def storage_for(database_url: str) -> RDBStorage:
    """The process's Optuna storage beside nnforge's database `database_url` (created on first use)."""
    if database_url not in _storages:
        _storages[database_url] = _retried(lambda: _open_storage(database_url))
    return _storages[database_url]


def _open_storage(database_url: str) -> RDBStorage:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "nnforge.db")
        return RDBStorage(
            f"sqlite:///{path.with_name(path.stem + '.optuna' + path.suffix)}",
            engine_kwargs={"connect_args": {"timeout": 30}},
        )
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}")
    engine.dispose()
    return RDBStorage(
        url.render_as_string(hide_password=False),
        engine_kwargs={"connect_args": {"options": f"-csearch_path={OPTUNA_SCHEMA}"}, "pool_pre_ping": True},
    )


def _retried(create: Callable[[], T], attempts: int = 5) -> T:
    """Two processes creating the schema, Optuna's tables or a study at once: one loses the race, retries."""
    for attempt in range(attempts):
        try:
            return create()
        except sa.exc.SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def pruner(spec: SweepSpec) -> BasePruner:
    if spec.pruner == "asha":
        return SuccessiveHalvingPruner(min_resource=ASHA_MIN_EPOCHS, reduction_factor=ASHA_REDUCTION_FACTOR)
    if spec.pruner == "median":
        return MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=MEDIAN_WARMUP_EPOCHS)
    return NopPruner()


def decides_at(spec: SweepSpec, epoch: int) -> bool:
    """Whether the pruner can stop a trial after `epoch`: ASHA only at its rungs (1, 3, 9, … epochs), so a
    trial reports (a few statements each) only there; the median pruner after every epoch."""
    if spec.pruner != "asha":
        return True
    rung = ASHA_MIN_EPOCHS
    while rung < epoch:
        rung *= ASHA_REDUCTION_FACTOR
    return rung == epoch


def sampler(spec: SweepSpec, number: int) -> BaseSampler:
    """The sampler that picks trial `number`'s parameters."""
    if spec.sampler == "grid":  # one seed for the whole sweep: it orders the grid
        return GridSampler(
            {p: encoded(d) for p, d in spec.space.items() if isinstance(d, Choice)}, seed=spec.seed
        )
    if spec.sampler == "random":
        return RandomSampler(seed=spec.seed + number)
    return TPESampler(seed=spec.seed + number, constant_liar=True)


def open_study(
    storage: RDBStorage, *, sweep_id: str, spec: SweepSpec, direction: Literal["maximize", "minimize"]
) -> optuna.Study:
    """The sweep's study, created on its first pass (load_if_exists: a second creator loads it)."""
    try:
        return optuna.load_study(study_name=study_name(sweep_id), storage=storage, pruner=pruner(spec))
    except KeyError:
        return _retried(
            lambda: optuna.create_study(
                storage=storage,
                study_name=study_name(sweep_id),
                direction=direction,
                pruner=pruner(spec),
                load_if_exists=True,
            )
        )


def ask(
    study: optuna.Study, spec: SweepSpec, trials: list[FrozenTrial], build: Callable[[optuna.Trial], T]
) -> tuple[FrozenTrial, T]:
    """Ask for trial number len(`trials`) (the study's trials, read under the sweep's lock) and `build` from
    its suggestions. The sampler runs on an in-memory copy of the study: the new trial, with all its
    parameters, is then stored in one transaction instead of one per parameter (a pass's main cost)."""
    scratch = optuna.create_study(direction=study.direction, sampler=sampler(spec, len(trials)))
    scratch.add_trials(trials)
    built = build(scratch.ask())
    asked = scratch.trials[-1]
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=asked)
    return study._storage.get_trial(trial_id), built


def encoded(choice: Choice) -> list[Any]:
    """Optuna's categoricals hold only None, bool, int, float and str: other choices (lists, sub-specs) as
    JSON text, which optuna-dashboard shows as they were written."""
    if all(isinstance(c, PRIMITIVE) for c in choice.choices):
        return list(choice.choices)
    return [json.dumps(c, sort_keys=True) for c in choice.choices]


def decoded(choice: Choice, value: Any) -> Any:
    return value if all(isinstance(c, PRIMITIVE) for c in choice.choices) else json.loads(value)


def suggest_with(trial: optuna.trial.BaseTrial) -> Suggest:
    """Each path's value from `trial` (a path it already holds returns the same value again)."""

    def suggest(path: str, dist: Choice | Range) -> Any:
        if isinstance(dist, Choice):
            return decoded(dist, trial.suggest_categorical(path, encoded(dist)))
        if dist.is_int:
            return trial.suggest_int(
                path, int(dist.low), int(dist.high), step=int(dist.step or 1), log=dist.log
            )
        return trial.suggest_float(path, float(dist.low), float(dist.high), step=dist.step, log=dist.log)

    return suggest


def trial_handle(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """A handle on trial `number` of `study`, to report into it or suggest for it from any process."""
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)
