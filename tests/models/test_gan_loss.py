"""The GAN value function and generator losses against their literal definitions with D = sigmoid, and the
adversarial train step against hand-driven gradient steps on a copy of the same network."""

import copy
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from models.archs.gan import gan_value, generator_loss
from models.datasets import builtin_dataset
from models.optim import build_optimizer
from models.procedures import StepContext, step_metrics
from models.registry import get_architecture
from models.specs import parse_job_spec


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # so the step's own latent draws are float64 too
    yield
    torch.set_default_dtype(previous)


def _logits() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(9, 1, generator=gen, dtype=torch.float64) * 3
    fake = torch.randn(7, 1, generator=gen, dtype=torch.float64) * 3 - 1
    return real, fake


def _literal_value(real: Tensor, fake: Tensor) -> Tensor:
    """E[log D(x)] + E[log(1 − D(G(z)))] with D = sigmoid, written out literally."""
    return torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean()


def test_value_gan_value_equals_literal_expectation() -> None:
    real, fake = _logits()
    assert gan_value(real, fake).item() == pytest.approx(_literal_value(real, fake).item(), abs=1e-12)
    d_real, d_fake = 1 / (1 + np.exp(-real.numpy())), 1 / (1 + np.exp(-fake.numpy()))
    assert gan_value(real, fake).item() == pytest.approx(
        np.log(d_real).mean() + np.log(1 - d_fake).mean(), abs=1e-12
    )


def test_value_gan_value_gradient_wrt_logits_by_hand() -> None:
    real, fake = (t.clone().requires_grad_(True) for t in _logits())
    gan_value(real, fake).backward()
    # ∂/∂r log σ(r) = 1 − σ(r); ∂/∂f log(1 − σ(f)) = −σ(f); each averaged over its own batch
    torch.testing.assert_close(real.grad, (1 - torch.sigmoid(real.detach())) / len(real), rtol=0, atol=1e-14)
    torch.testing.assert_close(fake.grad, -torch.sigmoid(fake.detach()) / len(fake), rtol=0, atol=1e-14)


def test_value_gan_value_stable_where_literal_form_overflows() -> None:
    real = torch.tensor([[-800.0]], dtype=torch.float64)
    fake = torch.tensor([[800.0]], dtype=torch.float64)
    assert torch.isinf(_literal_value(real, fake))  # log(σ(−800)) underflows to log 0
    # log σ(−a) = −a − log(1 + e^(−a)) ≈ −a for large a
    assert gan_value(real, fake).item() == pytest.approx(-1600.0, rel=1e-12)


def test_value_discriminator_optimum_is_pdata_over_pdata_plus_pg() -> None:
    """For fixed G the value is maximised at D*(x) = p_data/(p_data + p_g) (Goodfellow et al., Prop. 1)."""
    # one point x seen with weight a among the real samples and b among the fakes: maximise over one logit
    a, b = 0.7, 0.2
    logit = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([logit], lr=5.0)
    for _ in range(300):
        optimizer.zero_grad()
        (
            -(
                a * gan_value(logit, torch.full((1, 1), 100.0))
                + b * gan_value(torch.full((1, 1), 100.0), logit)
            )
        ).backward()
        optimizer.step()
    assert torch.sigmoid(logit).item() == pytest.approx(a / (a + b), abs=1e-6)


def test_loss_generator_minimax_is_second_term_of_value() -> None:
    _, fake = _logits()
    expected = torch.log(1 - torch.sigmoid(fake)).mean()
    assert generator_loss(fake, "minimax").item() == pytest.approx(expected.item(), abs=1e-12)
    real = torch.zeros(3, 1, dtype=torch.float64)  # log σ(0) = −log 2 in the first term
    assert generator_loss(fake, "minimax").item() == pytest.approx(
        gan_value(real, fake).item() + np.log(2), abs=1e-12
    )


def test_loss_generator_non_saturating_is_minus_log_d_of_fake() -> None:
    _, fake = _logits()
    expected = -torch.log(torch.sigmoid(fake)).mean()
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(expected.item(), abs=1e-12)


def test_loss_generator_non_saturating_keeps_gradient_where_minimax_saturates() -> None:
    fake = torch.full((4, 1), -8.0, dtype=torch.float64, requires_grad=True)  # D confidently rejects G(z)
    (minimax,) = torch.autograd.grad(generator_loss(fake, "minimax"), fake)
    (non_saturating,) = torch.autograd.grad(generator_loss(fake, "non_saturating"), fake)
    # d/df log(1 − σ(f)) = −σ(f) ≈ −3e-4;  d/df −log σ(f) = −(1 − σ(f)) ≈ −1
    torch.testing.assert_close(minimax, -torch.sigmoid(fake.detach()) / 4, rtol=0, atol=1e-15)
    torch.testing.assert_close(non_saturating, -(1 - torch.sigmoid(fake.detach())) / 4, rtol=0, atol=1e-15)
    assert non_saturating.abs().min() > 1000 * minimax.abs().max()


# --------------------------------------------------------------------------------------- the train step

BODIES = {
    "mlp-ring": ("gaussian-ring", {"kind": "mlp", "hidden_sizes": [6, 5]}),
    "conv-digits": ("digits", {"kind": "conv", "channels": 4}),
}


def _gan(body: str, loss: str, d_steps: int, d_lr: float | None):
    dataset, body_spec = BODIES[body]
    model = {
        "arch": "gan",
        "latent_dim": 3,
        "generator": body_spec,
        "discriminator": body_spec,
        "loss": loss,
        "d_steps": d_steps,
    }
    if d_lr is not None:
        model["discriminator_optimizer"] = {"name": "sgd", "lr": d_lr}
    spec = parse_job_spec(
        {"dataset": {"name": dataset}, "model": model, "optimizer": {"name": "sgd", "lr": 0.01}}
    )
    raw = builtin_dataset(dataset)
    problem = spec.model.problem(raw.info)
    architecture = get_architecture("gan")
    torch.manual_seed(1)
    network = architecture.build(spec.model, problem)
    network.train()
    x = torch.tensor(raw.x[:16], dtype=torch.float64).reshape(16, *problem.input_shape)
    if dataset == "digits":
        x = x / 8 - 1  # roughly normalised pixels
    groups = architecture.procedure.parameter_groups(network, spec.model)
    optimizers = {g: build_optimizer(o or spec.optimizer, p) for g, (p, o) in groups.items()}
    lrs = {g: (o or spec.optimizer).lr for g, (_, o) in groups.items()}
    ctx = StepContext(network, optimizers, raw.info.task, spec.model, nullcontext)
    return architecture.procedure, ctx, network, spec.model, x, lrs


def _sgd_step(params: list[nn.Parameter], loss: Tensor, lr: float) -> None:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p -= lr * g


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize(("loss", "d_steps", "d_lr"), [("minimax", 1, None), ("non_saturating", 2, 0.03)])
def test_train_step_adversarial_matches_hand_gradient_steps(
    float64, body: str, loss: str, d_steps: int, d_lr: float | None
) -> None:
    procedure, ctx, network, spec, x, lrs = _gan(body, loss, d_steps, d_lr)
    initial, reference = copy.deepcopy(network), copy.deepcopy(network)
    d_params, g_params = list(reference.discriminator.parameters()), list(reference.generator.parameters())

    torch.manual_seed(123)
    outputs = procedure.train_step(ctx, x, None)
    metrics = {name: value.item() for name, value in step_metrics(procedure, [outputs]).items()}

    torch.manual_seed(123)  # the step draws z for each D step, then z for G, from the global generator
    values_before, values_after = [], []
    for _ in range(d_steps):
        z = torch.randn(len(x), spec.latent_dim)
        real_logits = reference.discriminator(x)
        fake = reference(z).detach()
        fake_logits = reference.discriminator(fake)
        value = _literal_value(real_logits, fake_logits)
        _sgd_step(d_params, -value, lrs["discriminator"])  # D ascends V: descends −V
        with torch.no_grad():
            values_before.append(value.item())
            values_after.append(
                _literal_value(
                    _frozen_bn(reference.discriminator, x), _frozen_bn(reference.discriminator, fake)
                ).item()
            )
    z = torch.randn(len(x), spec.latent_dim)
    fake_logits_g = reference.discriminator(reference(z))
    if loss == "minimax":
        g_objective = torch.log(1 - torch.sigmoid(fake_logits_g)).mean()
    else:
        g_objective = -torch.log(torch.sigmoid(fake_logits_g)).mean()
    _sgd_step(g_params, g_objective, lrs["generator"])

    assert metrics["d_loss"] == pytest.approx(-value.item(), abs=1e-12)  # D's loss is −V
    assert metrics["g_loss"] == pytest.approx(g_objective.item(), abs=1e-12)
    assert metrics["d_real"] == pytest.approx(torch.sigmoid(real_logits).mean().item(), abs=1e-12)
    assert metrics["d_fake"] == pytest.approx(torch.sigmoid(fake_logits).mean().item(), abs=1e-12)
    for (name, actual), expected in zip(
        network.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12, msg=f"{name} differs")
    for part in ("discriminator", "generator"):  # both networks really moved
        moved = [
            not torch.equal(a, b)
            for a, b in zip(
                getattr(network, part).parameters(), getattr(initial, part).parameters(), strict=True
            )
        ]
        assert any(moved), part
    # each small D step raises V on its own batch (same fakes, batch-norm statistics of that batch)
    assert all(after > before for before, after in zip(values_before, values_after, strict=True))


def _frozen_bn(module: nn.Module, x: Tensor) -> Tensor:
    """The module's train-mode output on x, leaving its batch-norm running statistics as they were (so the
    reference's state stays comparable with the stepped network's)."""
    saved = copy.deepcopy(module.state_dict())
    out = module(x)
    module.load_state_dict(saved)
    return out


def test_train_step_discriminator_ascends_value_and_minimax_generator_descends(float64) -> None:
    procedure, ctx, network, spec, x, _ = _gan("mlp-ring", "minimax", 1, None)
    before = copy.deepcopy(network)
    torch.manual_seed(7)
    procedure.train_step(ctx, x, None)
    torch.manual_seed(7)
    z_d, z_g = torch.randn(len(x), spec.latent_dim), torch.randn(len(x), spec.latent_dim)
    with torch.no_grad():
        v_old = gan_value(before.discriminator(x), before.discriminator(before(z_d)))
        v_new_d = gan_value(
            network.discriminator(x), network.discriminator(before(z_d))
        )  # D moved, G as it was
        g_old = generator_loss(network.discriminator(before(z_g)), "minimax")
        g_new = generator_loss(network.discriminator(network(z_g)), "minimax")
    assert v_new_d > v_old
    assert g_new < g_old
