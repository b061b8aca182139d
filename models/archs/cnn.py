"""Convolutional network: conv blocks (conv → [batch norm] → activation → pool), then FC layers."""

from math import prod

from torch import Tensor, nn

from models.archs.layers import activation, mlp_stack
from models.procedures import SUPERVISED
from models.registry import register_architecture
from models.specs import CNNSpec, Problem

_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class CNN(nn.Module):
    def __init__(self, spec: CNNSpec, problem: Problem) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_channels = problem.input_shape[0]
        for block in spec.conv_blocks:
            blocks.append(
                nn.Conv2d(in_channels, block.channels, block.kernel_size, block.stride, block.padding)
            )
            if spec.batch_norm:
                blocks.append(nn.BatchNorm2d(block.channels))
            blocks.append(activation(spec.activation))
            if block.pool != "none":
                blocks.append(_POOLS[block.pool](2))
            in_channels = block.channels
        self.features = nn.Sequential(*blocks)
        c, h, w = problem.input_shape
        flat = _flat_size(spec, (c, h, w))
        self.classifier = mlp_stack(
            flat, spec.hidden_sizes, problem.output_size, spec.activation, spec.dropout
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out)
        return self.classifier(self.features(x).flatten(1))


def _flat_size(spec: CNNSpec, image: tuple[int, int, int]) -> int:
    c, h, w = image
    for block in spec.conv_blocks:
        h = (h + 2 * block.padding - block.kernel_size) // block.stride + 1
        w = (w + 2 * block.padding - block.kernel_size) // block.stride + 1
        if block.pool != "none":
            h, w = h // 2, w // 2
        c = block.channels
    return prod((c, h, w))


register_architecture("cnn", build=CNN, procedure=SUPERVISED)
