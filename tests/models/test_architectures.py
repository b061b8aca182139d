"""Every registered architecture, parametrized over the registry: shapes, gradients, sizes, a short fit."""

import math

import pytest
import torch

from models.dataset_info import BUILTIN_DATASETS
from models.registry import get_architecture, list_architectures, register_architecture
from models.specs import parse_job_spec
from models.splits import split_indices
from models.train import fit

# One small instance per architecture and input kind: (arch, dataset, model overrides).
CASES = [
    ("mlp", "digits", {"hidden_sizes": [16, 8], "dropout": 0.1}),
    ("mlp", "sine", {"hidden_sizes": [8]}),
    ("cnn", "digits", {"conv_blocks": [{"channels": 4}, {"channels": 6, "pool": "avg"}], "batch_norm": True}),
    ("rnn", "digits", {"cell": "rnn", "nonlinearity": "relu", "hidden_size": 8}),
    ("rnn", "digits", {"cell": "gru", "hidden_size": 8, "bidirectional": True, "num_layers": 2}),
    ("rnn", "sine", {"cell": "lstm", "hidden_size": 8}),
    ("gan", "gaussian-ring", {"generator": {"hidden_sizes": [8]}, "discriminator": {"hidden_sizes": [8]}}),
    (
        "gan",
        "digits",
        {"generator": {"kind": "conv", "channels": 4}, "discriminator": {"kind": "conv", "channels": 4}},
    ),
]
IDS = [f"{arch}-{dataset}-{i}" for i, (arch, dataset, _) in enumerate(CASES)]


def _spec(arch: str, dataset: str, model: dict, **training: object):
    return parse_job_spec(
        {
            "dataset": {"name": dataset},
            "model": {"arch": arch, **model},
            "training": {"epochs": 1, "batch_size": 32, **training},
        }
    )


def test_registry_covers_every_arch_in_the_cases() -> None:
    assert {arch for arch, _, _ in CASES} == set(list_architectures())


def test_register_architecture_refuses_a_duplicate_name() -> None:
    existing = get_architecture("mlp")
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("mlp", build=existing.build, procedure=existing.procedure)


@pytest.mark.parametrize(("arch", "dataset", "model"), CASES, ids=IDS)
def test_build_matches_spec_parameter_count_and_output_shape(arch: str, dataset: str, model: dict) -> None:
    spec = _spec(arch, dataset, model)
    info = BUILTIN_DATASETS[dataset]
    problem = spec.model.problem(info)
    network = get_architecture(arch).build(spec.model, problem)
    assert sum(p.numel() for p in network.parameters()) == spec.model.num_parameters(info)
    network.eval()
    if get_architecture(arch).generative:
        out = network(torch.randn(3, spec.model.latent_dim))
        assert out.shape == (3, *problem.input_shape)
        assert network.discriminator(out).shape == (3, 1)
    else:
        out = network(torch.randn(3, *problem.input_shape))
        expected = (
            (3, problem.input_shape[0], problem.output_size)
            if problem.per_step_output
            else (3, problem.output_size)
        )
        assert out.shape == expected


@pytest.mark.parametrize(("arch", "dataset", "model"), CASES, ids=IDS)
def test_every_parameter_gets_a_gradient(arch: str, dataset: str, model: dict) -> None:
    spec = _spec(arch, dataset, model)
    problem = spec.model.problem(BUILTIN_DATASETS[dataset])
    network = get_architecture(arch).build(spec.model, problem)
    # Eval mode: batch norm then normalises with its running statistics, not the batch's. In training mode
    # the batch mean cancels a bias right before it (the conv GAN's), whose gradient is 0 up to rounding.
    network.eval()
    if get_architecture(arch).generative:
        loss = network.discriminator(network(torch.randn(4, spec.model.latent_dim))).sum()
    else:
        loss = network(torch.randn(4, *problem.input_shape)).square().sum()
    loss.backward()
    missing = [name for name, p in network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize(("arch", "dataset", "model"), CASES, ids=IDS)
def test_fit_two_steps_gives_finite_metrics(arch: str, dataset: str, model: dict) -> None:
    training = {"validation_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
    info = BUILTIN_DATASETS[dataset]
    n_train = len(split_indices(info.num_samples, 0.1, 0.2, 0)["train"])
    spec = _spec(arch, dataset, model, batch_size=math.ceil(n_train / 2), **training)

    result = fit(spec)

    assert (result.status, result.progress.step) == ("completed", 2)
    assert result.metrics and all(math.isfinite(v) for v in result.metrics.values())
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
