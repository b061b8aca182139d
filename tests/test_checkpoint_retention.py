"""The retention rule alone (pure): which of a job's checkpoints a policy keeps."""

import math

from app.db.checkpoint_retention import RetentionPolicy, StoredCheckpoint, kept


def _row(
    id_: int, step: int, value: float | str | None = None, *, resumable: bool = True
) -> StoredCheckpoint:
    metrics = {} if value is None else {"val_loss": value}
    return StoredCheckpoint(id_, step, True, resumable, metrics)


def test_the_newest_resumable_and_the_best_by_the_objective_are_kept() -> None:
    rows = [_row(1, 10, 0.9), _row(2, 20, 0.3), _row(3, 30, 0.5), _row(4, 40, 0.6), _row(5, 50, 0.7)]
    policy = RetentionPolicy(keep_last=2, keep_best=1, objective=("val_loss", "min"))
    assert kept(rows, policy) == {2, 4, 5}


def test_a_best_epochs_weights_never_count_as_the_last_resumable() -> None:
    rows = [_row(1, 10, 0.5), _row(2, 20, 0.1, resumable=False), _row(3, 30, 0.4)]
    assert kept(rows, RetentionPolicy(keep_last=2, keep_best=0, objective=None)) == {1, 3}


def test_non_finite_values_are_never_best_and_ties_go_to_the_earlier() -> None:
    rows = [_row(1, 10, "NaN"), _row(2, 20, 0.8), _row(3, 30, 0.8), _row(4, 40, math.inf)]
    policy = RetentionPolicy(keep_last=1, keep_best=1, objective=("val_loss", "max"))
    assert kept(rows, policy) == {2, 4}  # 4: the newest; 2: the first to reach the best finite value


def test_no_best_without_an_objective_and_the_newest_always() -> None:
    rows = [_row(1, 10, 0.1, resumable=False), _row(2, 5, 0.2)]
    assert kept(rows, RetentionPolicy(keep_last=1, keep_best=3, objective=None)) == {1, 2}
