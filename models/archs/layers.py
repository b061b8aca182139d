"""Small building blocks shared by the architectures."""

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def mlp_stack(
    n_in: int, hidden_sizes: list[int], n_out: int, act: str, dropout: float = 0.0
) -> nn.Sequential:
    """Hidden layers h = f(W h + b) (with optional dropout), then a linear output layer."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(n_in, width), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)
