"""FGSM and PGD against their formulas, and the robustness curve's invariants on a trained digits MLP."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.datasets import builtin_dataset
from models.evaluate.attacks import data_range, fgsm, pgd
from models.evaluate.params import RobustnessParams
from models.evaluate.run import evaluate
from models.evaluate.subject import load_subject
from models.specs import parse_job_spec
from models.train import fit

DIGITS_MLP = {
    "dataset": {"name": "digits"},
    "model": {"arch": "mlp", "hidden_sizes": [64]},
    "training": {"epochs": 3, "batch_size": 64, "seed": 0},
}


@pytest.fixture(scope="module")
def digits_checkpoint() -> dict:
    return fit(parse_job_spec(DIGITS_MLP)).checkpoint


def _linear(features: int = 6, classes: int = 3) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(features, classes).double()


def test_fgsm_is_the_signed_gradient_step_clipped_exactly() -> None:
    model = _linear()
    x = torch.randn(32, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    lo, hi = torch.full((6,), -0.9, dtype=torch.float64), torch.full((6,), 1.1, dtype=torch.float64)
    # ∇ₓ cross-entropy of a linear model, by hand: (softmax(Wx + b) − onehot(y)) W
    grad = (F.softmax(model(x), 1) - F.one_hot(y, 3).double()) @ model.weight
    expected = torch.clamp(x + 0.3 * grad.sign(), lo, hi)
    adversarial = fgsm(model, x, y, 0.3, lo, hi)
    assert torch.equal(adversarial, expected)
    assert (adversarial == hi).any() and (adversarial == lo).any()  # the clipping did bite


def test_one_pgd_step_of_epsilon_without_random_start_is_fgsm() -> None:
    model = _linear()
    x = torch.randn(32, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    lo, hi = torch.full((6,), -1.0, dtype=torch.float64), torch.full((6,), 1.0, dtype=torch.float64)
    one_step = pgd(
        model,
        x,
        y,
        0.4,
        steps=1,
        step_size=0.4,
        random_start=False,
        lo=lo,
        hi=hi,
        generator=torch.Generator(),
    )
    assert torch.equal(one_step, fgsm(model, x, y, 0.4, lo, hi))


def test_pgd_stays_in_the_epsilon_ball_and_the_data_range() -> None:
    model = _linear()
    x = torch.rand(64, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (64,))
    lo, hi = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    adversarial = pgd(
        model,
        x,
        y,
        0.2,
        steps=7,
        step_size=0.05,
        random_start=True,
        lo=lo,
        hi=hi,
        generator=torch.Generator().manual_seed(0),
    )
    assert (adversarial - x).abs().max() <= 0.2 + 1e-12
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    loss = F.cross_entropy(model(x), y)
    assert F.cross_entropy(model(adversarial), y) > loss  # it climbed


def test_robustness_curve_falls_with_epsilon_and_pgd_beats_fgsm(digits_checkpoint: dict) -> None:
    epsilons = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8]
    params = {"epsilons": epsilons, "samples": 200, "steps": 10}
    result = evaluate("robustness", params, digits_checkpoint, builtin_dataset("digits"), "test")
    points = result["points"]
    assert [(p["attack"], p["epsilon"]) for p in points] == [
        (a, e) for a in ("fgsm", "pgd") for e in epsilons
    ]
    curves = {a: [p["accuracy"] for p in points if p["attack"] == a] for a in ("fgsm", "pgd")}
    one_sample = 1 / result["samples"]
    for accuracies in curves.values():
        assert accuracies[0] == result["clean_accuracy"] > 0.8
        assert all(b <= a + one_sample for a, b in itertools.pairwise(accuracies))
        assert accuracies[-1] < accuracies[0] - 0.3  # the attack does something
    assert all(p <= f for f, p in zip(curves["fgsm"], curves["pgd"], strict=True))
    assert points[0]["attack_success_rate"] == 0.0
    assert 0 < points[-1]["attack_success_rate"] <= 1
    # ε in data units: ε × the feature's training std (digits pixels range 0–16)
    std = load_subject(digits_checkpoint, builtin_dataset("digits"), "test").data.std.flatten()
    assert points[3]["epsilon_raw"] == pytest.approx((0.2 * std).tolist(), rel=1e-5)
    examples = result["examples"]
    assert examples["attack"] == "pgd" and examples["kind"] == "images" and examples["items"]
    for item in examples["items"]:
        assert item["label"] != item["predicted"]
        assert len(item["before"]) == 8 and len(item["after"][0]) == 8


def test_attacks_stay_inside_the_training_data_range(digits_checkpoint: dict) -> None:
    subject = load_subject(digits_checkpoint, builtin_dataset("digits"), "test")
    lo, hi = data_range(subject)
    adversarial = fgsm(subject.module, subject.x[:50], subject.y[:50], 5.0, lo, hi)
    raw = subject.raw(adversarial)
    assert raw.min() >= -1e-4 and raw.max() <= 16 + 1e-4  # digits' pixels are 0..16
    assert RobustnessParams().epsilons[0] == 0.0  # the default curve starts at the clean accuracy
