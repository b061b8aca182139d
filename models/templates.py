"""Starter specs, one per architecture (and a few variants), tuned to learn in under a minute on a CPU.

`nnforge template` prints them, the learning tests train them, and the benchmarks time them.
"""

from typing import Any

TEMPLATES: dict[str, dict[str, Any]] = {
    "mlp": {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [256, 128], "activation": "gelu", "dropout": 0.2},
        "optimizer": {"name": "adam", "lr": 0.001},
        "training": {"epochs": 30, "batch_size": 64, "seed": 0},
    },
    "cnn": {
        "dataset": {"name": "digits"},
        "model": {
            "arch": "cnn",
            "conv_blocks": [{"channels": 16}, {"channels": 32}],
            "batch_norm": True,
            "hidden_sizes": [64],
        },
        "optimizer": {"name": "adam", "lr": 0.002},
        "training": {"epochs": 20, "batch_size": 64, "seed": 0},
    },
    "rnn": {
        "dataset": {"name": "digits"},
        "model": {"arch": "rnn", "cell": "rnn", "nonlinearity": "tanh", "hidden_size": 128},
        "optimizer": {"name": "adam", "lr": 0.002, "grad_clip_norm": 1.0},
        "training": {"epochs": 30, "batch_size": 64, "seed": 0},
    },
    "rnn-sine": {
        "dataset": {"name": "sine"},
        "model": {"arch": "rnn", "cell": "lstm", "hidden_size": 64},
        "optimizer": {"name": "adam", "lr": 0.005},
        "training": {"epochs": 30, "batch_size": 32, "seed": 0},
    },
    "gan": {
        "dataset": {"name": "gaussian-ring"},
        # Smooth (tanh) bodies cover all 8 modes; with leaky ReLU the generator collapses onto one or two.
        "model": {
            "arch": "gan",
            "latent_dim": 16,
            "generator": {"hidden_sizes": [128, 128], "activation": "tanh"},
            "discriminator": {"hidden_sizes": [128, 128], "activation": "tanh"},
        },
        "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.5, 0.999]},
        "training": {"epochs": 80, "batch_size": 128, "seed": 0},
    },
    "gan-conv": {
        "dataset": {"name": "digits"},
        "model": {
            "arch": "gan",
            "latent_dim": 32,
            "generator": {"kind": "conv", "channels": 64},
            "discriminator": {"kind": "conv", "channels": 64},
        },
        "optimizer": {"name": "adam", "lr": 0.0005, "betas": [0.5, 0.999]},
        "training": {"epochs": 20, "batch_size": 64, "seed": 0},
    },
}
