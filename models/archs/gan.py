"""Generative adversarial network on min_G max_D V(D, G) = E[log D(x)] + E[log(1 − D(G(z)))].

The step follows the DCGAN example: update D on real data and detached fakes, then update G.
"""

import copy
from math import prod
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.archs.layers import activation, mlp_stack
from models.procedures import (
    EVAL_BATCH_SIZE,
    EvalContext,
    ParameterGroups,
    StepContext,
    StepOutputs,
    batches,
    metric_values,
)
from models.registry import register_architecture
from models.specs import ConvBodySpec, GANSpec, MLPBodySpec, Problem

QUALITY_SAMPLES = 2000


def gan_value(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """V(D, G) = E[log D(x)] + E[log(1 − D(G(z)))] with D = sigmoid(logits), in a numerically stable form."""
    return F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean()


def generator_loss(fake_logits: Tensor, loss: str) -> Tensor:
    if loss == "minimax":  # G minimises E[log(1 − D(G(z)))], exactly the value function's second term
        return F.logsigmoid(-fake_logits).mean()
    return -F.logsigmoid(fake_logits).mean()  # non-saturating: G maximises E[log D(G(z))]


class GAN(nn.Module):
    """`forward(z)` generates samples in the (normalised) input view; `discriminator(x)` returns logits."""

    def __init__(self, spec: GANSpec, problem: Problem) -> None:
        super().__init__()
        self.latent_dim = spec.latent_dim
        self.sample_shape = problem.input_shape
        self.generator = _generator(spec.generator, spec.latent_dim, problem.input_shape)
        self.discriminator = _discriminator(spec.discriminator, problem.input_shape)

    def sample_latent(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def forward(self, z: Tensor) -> Tensor:  # (B, latent) -> (B, *sample_shape)
        return self.generator(z)


class _Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), *self.shape)


def _generator(body: MLPBodySpec | ConvBodySpec, latent: int, shape: tuple[int, ...]) -> nn.Module:
    if isinstance(body, MLPBodySpec):
        return nn.Sequential(
            mlp_stack(latent, body.hidden_sizes, prod(shape), body.activation), _Reshape(shape)
        )
    channels, height, width = shape
    base, half = body.channels, body.channels // 2
    return nn.Sequential(
        nn.Linear(latent, base * (height // 4) * (width // 4)),
        _Reshape((base, height // 4, width // 4)),
        nn.BatchNorm2d(base),
        activation(body.activation),
        nn.ConvTranspose2d(base, half, 4, 2, 1),  # (B, half, H/2, W/2)
        nn.BatchNorm2d(half),
        activation(body.activation),
        nn.ConvTranspose2d(half, channels, 4, 2, 1),  # (B, C, H, W)
    )


def _discriminator(body: MLPBodySpec | ConvBodySpec, shape: tuple[int, ...]) -> nn.Module:
    if isinstance(body, MLPBodySpec):
        return nn.Sequential(nn.Flatten(), mlp_stack(prod(shape), body.hidden_sizes, 1, body.activation))
    channels, height, width = shape
    base, half = body.channels, body.channels // 2
    return nn.Sequential(
        nn.Conv2d(channels, half, 4, 2, 1),  # (B, half, H/2, W/2)
        activation(body.activation),
        nn.Conv2d(half, base, 4, 2, 1),  # (B, base, H/4, W/4)
        nn.BatchNorm2d(base),
        activation(body.activation),
        nn.Flatten(),
        nn.Linear(base * (height // 4) * (width // 4), 1),
    )


class Adversarial:
    def parameter_groups(self, model: nn.Module, spec: Any) -> ParameterGroups:
        assert isinstance(model, GAN)
        return {
            "generator": (list(model.generator.parameters()), None),
            "discriminator": (list(model.discriminator.parameters()), spec.discriminator_optimizer),
        }

    def train_step(self, ctx: StepContext, x: Tensor, y: Tensor | None) -> StepOutputs:
        model, spec = ctx.model, ctx.spec
        assert isinstance(model, GAN)
        generator = model.generator  # called directly: GAN.forward adds a module call per use and step
        for _ in range(spec.d_steps):
            z = model.sample_latent(len(x), x.device)
            with ctx.autocast():
                real_logits = model.discriminator(x)
                fake_logits = model.discriminator(generator(z).detach())
                d_loss = -gan_value(real_logits, fake_logits)  # D ascends V
            ctx.update(d_loss, "discriminator")
        z = model.sample_latent(len(x), x.device)
        with ctx.autocast():
            fake_logits_g = model.discriminator(generator(z))
            g_loss = generator_loss(fake_logits_g, spec.loss)
        ctx.update(g_loss, "generator")
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "real_logits": real_logits.detach(),
            "fake_logits": fake_logits.detach(),
        }

    def compiled(self, model: nn.Module) -> nn.Module:
        # The step calls the two networks apart: a shallow copy of the GAN whose halves are compiled.
        assert isinstance(model, GAN)
        view = copy.copy(model)
        view._modules = dict(model._modules)
        view.generator = torch.compile(model.generator)  # type: ignore[assignment]
        view.discriminator = torch.compile(model.discriminator)  # type: ignore[assignment]
        return view

    def step_metrics(self, outputs: StepOutputs) -> dict[str, Tensor]:
        return {
            "d_loss": metric_values(outputs["d_loss"]),
            "g_loss": metric_values(outputs["g_loss"]),
            "d_real": torch.sigmoid(metric_values(outputs["real_logits"])).flatten(1).mean(1),
            "d_fake": torch.sigmoid(metric_values(outputs["fake_logits"])).flatten(1).mean(1),
        }

    @torch.no_grad()
    def evaluate(self, ctx: EvalContext, x: Tensor, y: Tensor | None) -> dict[str, float]:
        model = ctx.model
        assert isinstance(model, GAN)
        real = torch.zeros((), device=x.device)
        for part in batches(len(x), EVAL_BATCH_SIZE):
            with ctx.autocast():
                real += torch.sigmoid(model.discriminator(x[part]).float()).sum()
        samples = self.generate(ctx, QUALITY_SAMPLES)
        with ctx.autocast():
            fake = torch.sigmoid(model.discriminator(samples).float()).mean()
        metrics = {"d_real": real.item() / len(x), "d_fake": fake.item()}
        if ctx.quality is not None:
            metrics |= ctx.quality(ctx.denormalize(samples).cpu().numpy())
        return metrics

    @torch.no_grad()
    def generate(self, ctx: EvalContext, n: int) -> Tensor:
        model = ctx.model
        assert isinstance(model, GAN)
        # The evaluation generator, never the training RNG: drawing samples leaves a resumed run bit-exact.
        z = model.sample_latent(n, ctx.generator.device, ctx.generator)
        with ctx.autocast():
            return model(z).float()  # (n, *sample_shape), normalised view


register_architecture(
    "gan",
    build=GAN,
    procedure=Adversarial(),
    generative=True,
    output_networks=("generator", "discriminator"),
)
