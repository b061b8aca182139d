"""The report: what a classifier gets wrong and how well its confidence is calibrated; a regressor's errors;
a GAN's quality figures over several latent seeds."""

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from models.evaluate.params import MAX_REPORT_SAMPLES, ReportParams
from models.evaluate.subject import Subject, rounded
from models.procedures import EVAL_BATCH_SIZE, EvalContext, batches

ECE_BINS = 15
TOP_CONFUSIONS = 10
RESIDUAL_BINS = 20


def report(subject: Subject, params: ReportParams) -> dict[str, Any]:
    if subject.network.architecture.generative:
        return gan_report(subject, params.seeds)
    x, y = subject.x[:MAX_REPORT_SAMPLES], subject.y
    assert y is not None
    output = predict(subject.module, x)
    if subject.info.task == "classification":
        classes = list(subject.info.classes or range(output.shape[1]))
        return classification_report(output, y[:MAX_REPORT_SAMPLES], classes)
    return regression_report(output, y[:MAX_REPORT_SAMPLES].reshape(output.shape))


@torch.no_grad()
def predict(module: torch.nn.Module, x: Tensor) -> Tensor:
    return torch.cat([module(x[part]).float() for part in batches(len(x), EVAL_BATCH_SIZE)])


def classification_report(logits: Tensor, y: Tensor, classes: list[Any]) -> dict[str, Any]:
    """Confusion matrix (row = true class, column = predicted), per-class precision, recall, F1 and support,
    their macro and support-weighted means, the most frequent confusions, and calibration."""
    k = len(classes)
    probabilities = logits.softmax(1)
    confidence, predicted = probabilities.max(1)
    matrix = torch.bincount(y * k + predicted, minlength=k * k).reshape(k, k)  # (true, predicted)
    true_positives = matrix.diagonal().double()
    support, predicted_count = matrix.sum(1).double(), matrix.sum(0).double()
    precision = _ratio(true_positives, predicted_count)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    weights = support / support.sum()
    scores = {"precision": precision, "recall": recall, "f1": f1}
    off_diagonal = matrix.clone().fill_diagonal_(0)
    counts, flat = off_diagonal.flatten().sort(descending=True)
    confusions = [
        {"true": classes[i // k], "predicted": classes[i % k], "count": int(c)}
        for c, i in zip(counts[:TOP_CONFUSIONS].tolist(), flat[:TOP_CONFUSIONS].tolist(), strict=True)
        if c > 0
    ]
    ece, reliability = calibration(confidence, predicted == y)
    return {
        "task": "classification",
        "samples": len(y),
        "classes": classes,
        "accuracy": float((predicted == y).double().mean()),
        "confusion_matrix": matrix.tolist(),
        "per_class": [
            {"class": c, "precision": p, "recall": r, "f1": f, "support": int(s)}
            for c, p, r, f, s in zip(
                classes,
                rounded(precision.tolist()),
                rounded(recall.tolist()),
                rounded(f1.tolist()),
                support.tolist(),
                strict=True,
            )
        ],
        "macro": {name: float(v.mean()) for name, v in scores.items()},
        "weighted": {name: float((v * weights).sum()) for name, v in scores.items()},
        "top_confusions": confusions,
        "ece": ece,
        "reliability": reliability,
    }


def _ratio(a: Tensor, b: Tensor) -> Tensor:
    """a / b, 0 where b is 0 (scikit-learn's zero_division=0: a class never predicted has precision 0)."""
    return torch.where(b > 0, a / b.clamp(min=1e-300), torch.zeros_like(a))


def calibration(
    confidence: Tensor, correct: Tensor, bins: int = ECE_BINS
) -> tuple[float, list[dict[str, Any]]]:
    """Expected calibration error over `bins` equal-width bins of the top-class confidence, (lo, hi] each
    (Guo et al. 2017): Σ |B|/n · |accuracy(B) − confidence(B)|; and each bin's figures for the diagram."""
    index = (confidence.double() * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(index, minlength=bins).double()
    conf_sum = torch.bincount(index, weights=confidence.double(), minlength=bins)
    correct_sum = torch.bincount(index, weights=correct.double(), minlength=bins)
    filled = count > 0
    accuracy = torch.where(filled, correct_sum / count.clamp(min=1), torch.zeros_like(count))
    mean_conf = torch.where(filled, conf_sum / count.clamp(min=1), torch.zeros_like(count))
    ece = float(((count / count.sum()) * (accuracy - mean_conf).abs()).sum())
    reliability = [
        {
            "lo": b / bins,
            "hi": (b + 1) / bins,
            "count": int(count[b]),
            "accuracy": rounded(float(accuracy[b])) if filled[b] else None,
            "confidence": rounded(float(mean_conf[b])) if filled[b] else None,
        }
        for b in range(bins)
    ]
    return ece, reliability


def regression_report(output: Tensor, target: Tensor) -> dict[str, Any]:
    """MAE, RMSE and R² over every output value (each time step of an RNN's), and a residual histogram."""
    residual = (output - target).double().flatten()
    target = target.double().flatten()
    total = ((target - target.mean()) ** 2).sum()
    lo, hi = float(residual.min()), float(residual.max())
    counts = torch.histc(residual, bins=RESIDUAL_BINS, min=lo, max=hi if hi > lo else lo + 1)
    edges = torch.linspace(lo, hi if hi > lo else lo + 1, RESIDUAL_BINS + 1)
    return {
        "task": "regression",
        "samples": len(output),
        "mae": float(residual.abs().mean()),
        "rmse": float(residual.pow(2).mean().sqrt()),
        "r2": float(1 - residual.pow(2).sum() / total) if total > 0 else None,
        "residual_histogram": {"edges": rounded(edges.tolist()), "counts": [int(c) for c in counts.tolist()]},
    }


def gan_report(subject: Subject, seeds: int) -> dict[str, Any]:
    """The procedure's own quality figures (the ones training reports each epoch) drawn with latent seeds
    0..seeds-1, with their mean and spread (population standard deviation)."""
    per_seed: list[dict[str, Any]] = []
    for seed in range(seeds):
        ctx = EvalContext(
            model=subject.module,
            task=subject.info.task,
            spec=subject.spec.model,
            autocast=nullcontext,
            denormalize=subject.data.denormalize,
            quality=subject.data.quality,
            generator=torch.Generator().manual_seed(seed),
        )
        metrics = subject.network.architecture.procedure.evaluate(ctx, subject.x, None)
        per_seed.append({"seed": seed, "metrics": metrics})
    names = list(per_seed[0]["metrics"])
    values = {n: torch.tensor([s["metrics"][n] for s in per_seed], dtype=torch.float64) for n in names}
    return {
        "task": "generative",
        "seeds": per_seed,
        "mean": {n: float(v.mean()) for n, v in values.items()},
        "std": {n: float(v.std(unbiased=False)) for n, v in values.items()},
    }
