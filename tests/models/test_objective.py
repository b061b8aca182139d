"""One objective per job: its default per kind of network, its check against the metrics a run reports,
and what it decides — the best epoch, its checkpoint, its test score and early stopping."""

from typing import Any

import pytest

from models.dataset_info import BUILTIN_DATASETS
from models.dry_check import dry_check
from models.errors import SpecError
from models.specs import parse_job_spec
from models.train import EpochReport, Hook, fit


def _spec(dataset: str, model: dict, **training: Any) -> Any:
    return parse_job_spec({"dataset": {"name": dataset}, "model": model, "training": training})


@pytest.mark.parametrize(
    ("dataset", "model", "training", "expected"),
    [
        ("digits", {"arch": "mlp"}, {}, ("val_accuracy", "max")),
        ("digits", {"arch": "cnn"}, {"validation_fraction": 0}, ("train_accuracy", "max")),
        ("sine", {"arch": "rnn", "head": "per_step"}, {}, ("val_loss", "min")),
        ("gaussian-ring", {"arch": "gan"}, {}, ("val_high_quality_fraction", "max")),
        (
            "digits",
            {"arch": "gan", "generator": {"kind": "conv"}, "discriminator": {"kind": "conv"}},
            {},
            None,
        ),
    ],
)
def test_the_default_objective_fits_the_network_and_dataset(
    dataset: str, model: dict, training: dict, expected: tuple[str, str] | None
) -> None:
    objective = dry_check(_spec(dataset, model, **training), BUILTIN_DATASETS[dataset]).objective
    assert (objective.metric, objective.mode) == expected if expected else objective is None


@pytest.mark.parametrize(
    ("training", "field"),
    [
        ({"objective": {"metric": "val_f1", "mode": "max"}}, "training.objective.metric"),
        ({"early_stopping": {"metric": "val_f1"}}, "training.early_stopping.metric"),
        (
            {"validation_fraction": 0, "objective": {"metric": "val_loss", "mode": "min"}},
            "training.objective.metric",
        ),
    ],
)
def test_a_metric_the_run_never_reports_is_refused_listing_those_it_does(training: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        dry_check(_spec("digits", {"arch": "mlp"}, **training), BUILTIN_DATASETS["digits"])
    issue = caught.value.issues[0]
    assert issue.field == field
    assert "train_loss" in issue.reason and "train_accuracy" in issue.reason


class Epochs(Hook):
    def __init__(self) -> None:
        self.reports: list[EpochReport] = []
        self.checkpoint_epochs: list[int] = []

    def on_epoch(self, report: EpochReport) -> None:
        self.reports.append(report)

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.checkpoint_epochs.append(checkpoint["progress"]["epoch"])


@pytest.mark.parametrize(("metric", "mode"), [("val_loss", "min"), ("val_accuracy", "max")])
def test_the_objective_picks_the_best_epoch_which_is_checkpointed_and_scored_on_test(
    metric: str, mode: str
) -> None:
    spec = _spec(
        "digits",
        {"arch": "mlp", "hidden_sizes": [16]},
        epochs=12,
        checkpoint_every=100,
        objective={"metric": metric, "mode": mode},
    )
    hook = Epochs()
    result = fit(spec, hook=hook)
    values = [r.metrics[metric] for r in hook.reports]
    best = (min if mode == "min" else max)(values)
    best_epoch = values.index(best) + 1  # the first epoch reaching it
    assert result.progress.best_epoch == best_epoch
    assert [r.epoch for r in hook.reports if r.is_best][-1] == best_epoch
    assert best_epoch in hook.checkpoint_epochs  # written then, whatever checkpoint_every says
    best_test = result.progress.best_test_metrics
    assert set(best_test) == {"test_loss", "test_accuracy"}
    if best_epoch != 12:  # the last epoch's test score is of other weights
        assert best_test != {k: v for k, v in result.metrics.items() if k.startswith("test_")}


def test_early_stopping_follows_the_objective_unless_it_names_its_own() -> None:
    follow = _spec("digits", {"arch": "mlp", "hidden_sizes": [16]}, epochs=60, early_stopping={"patience": 2})
    result = fit(follow)
    assert result.status == "early_stopped"
    assert result.progress.epoch - result.progress.best_epoch == 2  # stopped 2 epochs past the best accuracy
