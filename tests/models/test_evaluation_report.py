"""The report's figures against scikit-learn and a hand computation of the calibration error."""

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, mean_absolute_error, precision_recall_fscore_support, r2_score

from models.datasets import builtin_dataset
from models.evaluate.report import calibration, classification_report, regression_report
from models.evaluate.run import evaluate
from models.specs import parse_job_spec
from models.train import fit


def _logits(n: int = 500, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    y = torch.randint(0, k, (n,), generator=generator)
    logits = torch.randn(n, k, generator=generator) * 2
    logits[torch.arange(n), y] += 1.5  # better than chance, not perfect
    logits[:, 4] -= 20  # class 4 is never predicted: its precision is 0, as scikit-learn's zero_division=0
    return logits, y


def test_classification_report_matches_scikit_learn() -> None:
    logits, y = _logits()
    predicted = logits.argmax(1).numpy()
    report = classification_report(logits, y, ["a", "b", "c", "d", "e"])
    assert report["confusion_matrix"] == confusion_matrix(y.numpy(), predicted, labels=range(5)).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        y.numpy(), predicted, labels=range(5), zero_division=0
    )
    rows = report["per_class"]
    assert [r["class"] for r in rows] == ["a", "b", "c", "d", "e"]
    assert [r["precision"] for r in rows] == pytest.approx(precision, rel=1e-5)
    assert [r["recall"] for r in rows] == pytest.approx(recall, rel=1e-5)
    assert [r["f1"] for r in rows] == pytest.approx(f1, rel=1e-5)
    assert [r["support"] for r in rows] == support.tolist()
    for average in ("macro", "weighted"):
        expected = precision_recall_fscore_support(
            y.numpy(), predicted, labels=range(5), average=average, zero_division=0
        )
        assert [report[average][n] for n in ("precision", "recall", "f1")] == pytest.approx(expected[:3])
    assert report["accuracy"] == pytest.approx((predicted == y.numpy()).mean())
    matrix = np.array(report["confusion_matrix"])
    top = report["top_confusions"][0]
    np.fill_diagonal(matrix, 0)
    assert top["count"] == matrix.max() and top["true"] != top["predicted"]


def test_calibration_error_matches_a_hand_computation() -> None:
    logits, y = _logits()
    probabilities = logits.softmax(1)
    confidence, predicted = probabilities.max(1)
    correct = predicted == y
    ece, reliability = calibration(confidence, correct)
    expected, n = 0.0, len(y)
    for b in range(15):  # bins (b/15, (b+1)/15]
        in_bin = [i for i in range(n) if b / 15 < confidence[i] <= (b + 1) / 15]
        assert reliability[b]["count"] == len(in_bin)
        if in_bin:
            accuracy = sum(bool(correct[i]) for i in in_bin) / len(in_bin)
            mean_confidence = sum(float(confidence[i]) for i in in_bin) / len(in_bin)
            expected += len(in_bin) / n * abs(accuracy - mean_confidence)
            assert reliability[b]["accuracy"] == pytest.approx(accuracy, rel=1e-5)
    assert ece == pytest.approx(expected, rel=1e-9)
    assert sum(b["count"] for b in reliability) == n
    perfect, _ = calibration(torch.ones(10), torch.ones(10, dtype=torch.bool))
    assert perfect == 0.0


def test_regression_report_matches_scikit_learn() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(40, 50, 1, generator=generator)
    output = target + 0.3 * torch.randn(40, 50, 1, generator=generator)
    report = regression_report(output, target)
    t, o = target.flatten().numpy(), output.flatten().numpy()
    assert report["mae"] == pytest.approx(mean_absolute_error(t, o), rel=1e-6)
    assert report["rmse"] == pytest.approx(float(np.sqrt(((t - o) ** 2).mean())), rel=1e-6)
    assert report["r2"] == pytest.approx(r2_score(t, o), rel=1e-6)
    histogram = report["residual_histogram"]
    assert sum(histogram["counts"]) == t.size and len(histogram["edges"]) == len(histogram["counts"]) + 1


def test_gan_report_gives_quality_figures_per_seed_with_spread() -> None:
    spec = {
        "dataset": {"name": "gaussian-ring"},
        "model": {
            "arch": "gan",
            "generator": {"hidden_sizes": [16]},
            "discriminator": {"hidden_sizes": [16]},
        },
        "training": {"epochs": 1, "batch_size": 256, "seed": 0},
    }
    checkpoint = fit(parse_job_spec(spec)).checkpoint
    report = evaluate("report", {"seeds": 3}, checkpoint, builtin_dataset("gaussian-ring"), "test")
    assert [s["seed"] for s in report["seeds"]] == [0, 1, 2]
    values = [s["metrics"]["high_quality_fraction"] for s in report["seeds"]]
    assert report["mean"]["high_quality_fraction"] == pytest.approx(np.mean(values))
    assert report["std"]["high_quality_fraction"] == pytest.approx(np.std(values))
    assert "modes_covered" in report["mean"]
