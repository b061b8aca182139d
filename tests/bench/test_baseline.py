"""The benchmarks' baseline (bench/baseline.py) is a plain loop, yet trains exactly the network fit() trains:
the same assembled run, the same batch order, the same step. So fit/plain measures fit's loop alone."""

import pytest
import torch

from bench.baseline import plain_epochs, plain_run
from models.specs import parse_job_spec
from models.train import fit

# One small job per architecture, with the options a step can take: dropout, a schedule with warm-up,
# gradient clipping, batch norm, several discriminator steps with an optimizer of their own.
JOBS = {
    "mlp": {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [16], "dropout": 0.2},
        "optimizer": {"schedule": {"kind": "cosine"}, "warmup_steps": 3, "grad_clip_norm": 1.0},
    },
    "cnn": {
        "dataset": {"name": "digits"},
        "model": {"arch": "cnn", "conv_blocks": [{"channels": 4}], "batch_norm": True, "hidden_sizes": [8]},
        "optimizer": {"name": "momentum", "lr": 0.05},
    },
    "rnn": {
        "dataset": {"name": "sine"},
        "model": {"arch": "rnn", "cell": "gru", "hidden_size": 8},
    },
    "gan": {
        "dataset": {"name": "gaussian-ring"},
        "model": {
            "arch": "gan",
            "latent_dim": 4,
            "generator": {"hidden_sizes": [16]},
            "discriminator": {"hidden_sizes": [16]},
            "d_steps": 2,
            "discriminator_optimizer": {"name": "sgd", "lr": 0.05},
        },
    },
}


@pytest.mark.parametrize("arch", list(JOBS))
def test_plain_loop_trains_the_same_weights_as_fit(arch: str) -> None:
    spec = parse_job_spec({**JOBS[arch], "training": {"epochs": 2, "batch_size": 128, "device": "cpu"}})
    trained = fit(spec).model.state_dict()
    run = plain_run(spec)
    epoch = plain_epochs(run)
    for _ in range(spec.training.epochs):
        epoch()
    plain = run.model.state_dict()
    assert list(plain) == list(trained)
    assert all(torch.equal(plain[name], trained[name]) for name in trained)
