"""Multilayer perceptron on the flattened input."""

from torch import Tensor, nn

from models.archs.layers import mlp_stack
from models.procedures import SUPERVISED
from models.registry import register_architecture
from models.specs import MLPSpec, Problem


class MLP(nn.Module):
    def __init__(self, spec: MLPSpec, problem: Problem) -> None:
        super().__init__()
        self.layers = mlp_stack(
            problem.input_shape[0], spec.hidden_sizes, problem.output_size, spec.activation, spec.dropout
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, F) -> (B, out)
        return self.layers(x)


register_architecture("mlp", build=MLP, procedure=SUPERVISED)
