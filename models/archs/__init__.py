"""Built-in architectures; importing this package registers each of them."""

from models.archs import cnn, gan, mlp, rnn

__all__ = ["cnn", "gan", "mlp", "rnn"]
