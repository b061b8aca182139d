"""Adversarial accuracy under FGSM and PGD, in units of the normalised input (what the network sees: one unit
is one standard deviation of the training data, per feature or per channel), inside the data's range.

FGSM (Goodfellow et al. 2015): x' = clip(x + ε·sign(∇ₓL(x, y))). PGD (Madry et al. 2018): from a uniform
point of the ε-ball (random start), `steps` signed-gradient steps, each projected back onto the ε-ball
around x and the data range. Both maximise the cross-entropy of the true label, with the network in eval
mode (dropout off, batch norm on its running statistics), so each sample's attack is its own."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.evaluate.params import RobustnessParams
from models.evaluate.report import predict
from models.evaluate.subject import Subject, rounded
from models.samples import sample_kind

ATTACK_BATCH = 512
EXAMPLES = 4  # adversarial examples kept for the page


def _gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    # Summed, not averaged: each sample's gradient is its own loss's, whatever the batch holds.
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def fgsm(model: nn.Module, x: Tensor, y: Tensor, epsilon: float, lo: Tensor, hi: Tensor) -> Tensor:
    """x + ε·sign(∇ₓL), clipped to [lo, hi] (the data range, broadcastable to x)."""
    return torch.clamp(x + epsilon * _gradient(model, x, y).sign(), lo, hi).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    *,
    steps: int,
    step_size: float,
    random_start: bool,
    lo: Tensor,
    hi: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """`steps` steps of size `step_size` (absolute, in input units) up the loss, each projected onto
    {x' : ‖x' − x‖∞ ≤ ε} ∩ [lo, hi]. One step of ε from x is FGSM."""

    def project(point: Tensor) -> Tensor:
        # Onto the ε-ball, then the data range: a test sample outside the training range is pulled into it.
        return torch.clamp(torch.clamp(point, x - epsilon, x + epsilon), lo, hi)

    adversarial = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1  # uniform in [-1, 1)
        adversarial = project(x + epsilon * noise.to(x.device))
    for _ in range(steps):
        step = adversarial + step_size * _gradient(model, adversarial, y).sign()
        adversarial = project(step)
    return adversarial.detach()


def data_range(subject: Subject) -> tuple[Tensor, Tensor]:
    """The smallest and largest raw value of the training data, per feature in normalised units."""
    data = subject.data
    raw_train = data.denormalize(data.x["train"])
    raw_lo, raw_hi = raw_train.min(), raw_train.max()
    return (raw_lo - data.mean) / data.std, (raw_hi - data.mean) / data.std


def robustness(subject: Subject, params: RobustnessParams) -> dict[str, Any]:
    """Accuracy and attack success rate (the share of correctly classified samples the attack flips) at each
    ε asked, per attack, on the first `samples` samples of the split; ε = 0 is the clean accuracy."""
    model, x, y = subject.module, subject.x[: params.samples], subject.y
    assert y is not None
    y = y[: params.samples]
    lo, hi = data_range(subject)
    clean = predict(model, x).argmax(1) == y
    generator = torch.Generator().manual_seed(params.seed)
    points, last = [], None
    for attack in params.attacks:
        for epsilon in params.epsilons:
            adversarial = torch.cat(
                [
                    _attack(model, x[i], y[i], attack, epsilon, params, lo, hi, generator)
                    for i in _parts(len(x))
                ]
            )
            predicted = predict(model, adversarial).argmax(1)
            correct = predicted == y
            flipped = (clean & ~correct).sum()
            points.append(
                {
                    "attack": attack,
                    "epsilon": epsilon,
                    "epsilon_raw": rounded((epsilon * subject.data.std).flatten().tolist()),
                    "accuracy": float(correct.double().mean()),
                    "attack_success_rate": float(flipped / clean.sum()) if clean.any() else None,
                }
            )
            last = (attack, epsilon, adversarial, predicted)
    assert last is not None
    return {
        "samples": len(x),
        "clean_accuracy": float(clean.double().mean()),
        "units": "normalised input: ε = 1 is one standard deviation of the training data "
        "(epsilon_raw: ε × std in data units, per normalisation statistic)",
        "points": points,
        "examples": _examples(subject, x, y, clean, *last),
    }


def _parts(n: int) -> list[slice]:
    return [slice(start, start + ATTACK_BATCH) for start in range(0, n, ATTACK_BATCH)]


def _attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: str,
    epsilon: float,
    params: RobustnessParams,
    lo: Tensor,
    hi: Tensor,
    generator: torch.Generator,
) -> Tensor:
    if epsilon == 0:
        return x
    if attack == "fgsm":
        return fgsm(model, x, y, epsilon, lo, hi)
    relative = params.step_size if params.step_size is not None else 2.5 / params.steps
    return pgd(
        model,
        x,
        y,
        epsilon,
        steps=params.steps,
        step_size=relative * epsilon,
        random_start=params.random_start,
        lo=lo,
        hi=hi,
        generator=generator,
    )


def _examples(
    subject: Subject,
    x: Tensor,
    y: Tensor,
    clean: Tensor,
    attack: str,
    epsilon: float,
    adversarial: Tensor,
    predicted: Tensor,
) -> dict[str, Any]:
    """The first few samples the last attack asked (the strongest ε of PGD by default) flipped, before and
    after, in data units: images for image data, values for vector data."""
    flipped = (clean & (predicted != y)).nonzero().flatten()[:EXAMPLES]
    classes = list(subject.info.classes or range(subject.info.num_classes or 0))
    before, after = subject.raw(x[flipped]), subject.raw(adversarial[flipped])
    return {
        "attack": attack,
        "epsilon": epsilon,
        "kind": sample_kind(subject.info.sample_shape),
        "items": [
            {
                "label": classes[int(y[i])],
                "predicted": classes[int(predicted[i])],
                "before": rounded(b.tolist()),
                "after": rounded(a.tolist()),
            }
            for i, b, a in zip(flipped.tolist(), before, after, strict=True)
        ],
    }
