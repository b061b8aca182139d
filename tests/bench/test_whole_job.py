"""bench.whole_job's plain script evaluates as fit() does: the same validation metrics after every epoch and
the same test metrics at the end, bit for bit, so a job is compared with a loop that does the same work."""

import pytest

from bench.whole_job import job_spec, plain_with_validation
from models.templates import TEMPLATES
from models.train import EpochReport, Hook, fit


class _Metrics(Hook):
    def __init__(self) -> None:
        self.reports: list[EpochReport] = []

    def on_epoch(self, report: EpochReport) -> None:
        self.reports.append(report)


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_plain_with_validation_reports_the_metrics_fit_reports(template: str) -> None:
    spec = job_spec(template, epochs=2)
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"device": "cpu"})})
    hook = _Metrics()
    fit(spec, hook=hook)
    plain = plain_with_validation(spec)
    fitted = [{k[4:]: v for k, v in r.metrics.items() if k.startswith("val_")} for r in hook.reports]
    assert fitted[0] and plain.val_metrics == fitted
    final = hook.reports[-1].metrics
    assert plain.test_metrics and plain.test_metrics == {
        k[5:]: v for k, v in final.items() if k.startswith("test_")
    }
    assert len(plain.timing.epoch_ends) == spec.training.epochs
