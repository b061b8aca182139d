"""What a job costs, estimated from its spec and its dataset's shape before anything runs (torch-free: the API
refuses what is too costly without loading torch).

Compute counts the multiply-adds of the matrix products and convolutions (elementwise work, norms and pooling
are left out: they are a few per cent), as FLOPs, two per multiply-add, the unit torch's FlopCounterMode
reports. A training step is the forward pass, the weight gradients (as many multiply-adds as the forward
pass) and the input gradients of every layer but the first, whose input is data. A sequence costs its length
times a time step. Memory counts float32 tensors: parameters, their gradients, the optimizer's state, a
checkpoint's copy of the weights and that state while it is written, what the forward pass keeps for the
backward pass at the batch size (or an evaluation batch's largest tensor, if larger) and the dataset as the
training process holds it (the array read, its tensor and the normalised splits). The floats each layer
keeps were measured with torch's saved-tensor hooks; tests/models/test_cost.py holds the estimate against
FlopCounterMode and against a real run's resident peak.
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any

from models.dataset_info import DatasetInfo
from models.errors import SpecError, SpecIssue
from models.specs import (
    CNNSpec,
    ConvBodySpec,
    GANSpec,
    JobSpec,
    MLPBodySpec,
    MLPSpec,
    RNNSpec,
    check_against_dataset,
)
from models.splits import split_sizes

FLOPS_PER_MAC = 2
FLOAT_BYTES = 4
LABEL_BYTES = 8  # int64 class indices
DRY_RUN_SAMPLES = 2  # models.dry_check.SAMPLES
EVAL_BATCH_SIZE = 1024  # models.procedures.EVAL_BATCH_SIZE
GAN_EVAL_SAMPLES = 2000  # models.archs.gan.QUALITY_SAMPLES: a GAN's evaluation generates these
DATA_COPIES = 3  # the array read, its float32 tensor, the normalised splits
# The training process itself (interpreter, torch, the database driver: an idle standby holds 384 MiB), which
# a job's memory limit covers too; held against MAX_JOB_MEMORY_BYTES beside the estimate, not part of it.
PROCESS_BYTES = 384 * 2**20
# Floats kept for the backward pass per hidden unit and time step (torch's CPU cells, measured).
_RNN_SAVED_PER_UNIT = {"rnn": 1.5, "gru": 7.5, "lstm": 17.0}
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_CONV_SAVED_PER_OUTPUT = 2.5  # convolution output, batch norm, activation, pooling indices (measured)
_LINEAR_SAVED_PER_OUTPUT = 2.0  # pre-activation and activation output
_DROPOUT_SAVED_PER_OUTPUT = 1.25  # its mask (a byte each) and its output
# Per parameter, tensors of the parameter's size each optimizer keeps (momentum buffers, squared averages).
_OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}


@dataclass(frozen=True)
class Layer:
    macs: int  # forward multiply-adds per sample
    saved: float  # floats per sample kept for the backward pass
    output: int  # floats per sample it produces


@dataclass(frozen=True)
class Net:
    """A network as a chain of layers, enough to count its work."""

    layers: tuple[Layer, ...]
    input_size: int

    @property
    def forward(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def backward(self, *, input_grad: bool) -> int:
        """Weight gradients of every layer and input gradients of every layer but the first, unless its
        input needs one (a generated sample on its way back to the generator)."""
        first = self.layers[0].macs if self.layers and not input_grad else 0
        return 2 * self.forward - first

    @property
    def saved(self) -> float:
        return self.input_size + sum(layer.saved for layer in self.layers)

    @property
    def largest_output(self) -> int:
        return max(layer.output for layer in self.layers)


@dataclass(frozen=True)
class Cost:
    parameters: int
    batch_size: int  # samples in a training step: the spec's batch size, or the whole training split
    step_flops: int  # one training step (forward and backward) at `batch_size`
    sample_flops: int  # one sample's share of a step
    dry_run_flops: int  # the dry check: one training step and one evaluation on 2 samples
    fixed_bytes: int  # parameters, gradients, optimizer state, a checkpoint's copy and the data
    activation_bytes: int  # what a step (or an evaluation batch) holds at `batch_size`

    @property
    def memory_bytes(self) -> int:
        return self.fixed_bytes + self.activation_bytes


@dataclass(frozen=True)
class CostLimits:
    max_step_flops: float
    max_memory_bytes: int
    max_dry_run_flops: float


def estimate(spec: JobSpec, info: DatasetInfo) -> Cost:
    """The cost of `spec` on a dataset shaped like `info`; SpecError where the model does not fit it."""
    parameters = check_against_dataset(spec, info)
    sizes = split_sizes(info.num_samples, spec.training.validation_fraction, spec.training.test_fraction)
    batch = min(spec.training.batch_size, sizes["train"])
    eval_batch = min(EVAL_BATCH_SIZE, max(sizes.values()))
    work = _WORK[type(spec.model)](spec.model, info)
    optimizer_floats = sum(
        count * _state_per_parameter(optimizer or spec.optimizer) for count, optimizer in work.groups
    )
    data_floats = DATA_COPIES * info.num_samples * prod(info.sample_shape)
    labels = 0 if info.task == "unlabelled" else info.num_samples * max(1, prod(info.target_shape))
    activations = max(batch * work.saved, eval_batch * work.largest_output)
    return Cost(
        parameters=parameters,
        batch_size=batch,
        step_flops=FLOPS_PER_MAC * batch * work.step_macs,
        sample_flops=FLOPS_PER_MAC * work.step_macs,
        dry_run_flops=FLOPS_PER_MAC * (DRY_RUN_SAMPLES * work.step_macs + work.dry_eval_macs),
        fixed_bytes=FLOAT_BYTES * (3 * parameters + 2 * optimizer_floats + data_floats)
        + LABEL_BYTES * labels,
        activation_bytes=int(FLOAT_BYTES * activations),
    )


def check_cost(cost: Cost, limits: CostLimits) -> None:
    """SpecError naming each estimate over its limit, with the field that can bring it down."""
    issues = []
    if cost.dry_run_flops > limits.max_dry_run_flops:
        issues.append(
            SpecIssue(
                "model",
                cost.dry_run_flops,
                f"checking this spec before it queues (one training step and one evaluation on "
                f"{DRY_RUN_SAMPLES} samples) takes an estimated {cost.dry_run_flops:.3g} FLOPs, over "
                f"MAX_DRY_RUN_FLOPS ({limits.max_dry_run_flops:.3g}): a sample costs {cost.sample_flops:.3g} "
                "FLOPs to train; use a smaller model or shorter samples (sequence length, image size)",
            )
        )
    if cost.step_flops > limits.max_step_flops:
        fits = int(limits.max_step_flops // max(1, cost.sample_flops))
        issues.append(
            SpecIssue(
                "training.batch_size",
                cost.step_flops,
                f"one training step of {cost.batch_size:,} samples takes an estimated {cost.step_flops:.3g} "
                f"FLOPs, over MAX_STEP_FLOPS ({limits.max_step_flops:.3g}): "
                + (f"a batch_size up to {fits:,} fits" if fits else "use a smaller model"),
            )
        )
    if cost.memory_bytes + PROCESS_BYTES > limits.max_memory_bytes:
        model_alone = cost.fixed_bytes + PROCESS_BYTES > limits.max_memory_bytes
        issues.append(
            SpecIssue(
                "model" if model_alone else "training.batch_size",
                cost.memory_bytes,
                f"training needs an estimated {cost.memory_bytes:,} bytes ({cost.fixed_bytes:,} for "
                f"parameters, gradients, optimizer state and data, {cost.activation_bytes:,} for activations "
                f"at {cost.batch_size:,} samples), which with the training process's own "
                f"{PROCESS_BYTES:,} is over MAX_JOB_MEMORY_BYTES ({limits.max_memory_bytes:,}): "
                + ("use a smaller model or dataset" if model_alone else "use a smaller batch_size or model"),
            )
        )
    if issues:
        raise SpecError(issues)


# ------------------------------------------------------------------------------------- per architecture


@dataclass(frozen=True)
class _Work:
    step_macs: int  # per sample
    dry_eval_macs: int  # the dry check's evaluation, in all
    saved: float  # floats per sample a step holds at its peak
    largest_output: int  # floats per sample of the largest tensor an evaluation holds
    groups: tuple[tuple[int, Any], ...]  # (parameters, their own optimizer spec or None) per group


def _state_per_parameter(optimizer: Any) -> int:
    momentum = getattr(optimizer, "momentum", None)
    if optimizer.name == "momentum" and momentum == 0:  # torch's SGD keeps no buffer then
        return 0
    return _OPTIMIZER_STATE[optimizer.name] + (1 if optimizer.name == "rmsprop" and momentum else 0)


def _linear_chain(n_in: int, widths: list[int], n_out: int, dropout: float = 0.0) -> list[Layer]:
    per_output = _LINEAR_SAVED_PER_OUTPUT + (_DROPOUT_SAVED_PER_OUTPUT if dropout > 0 else 0.0)
    layers = [Layer(a * b, per_output * b, b) for a, b in itertools.pairwise([n_in, *widths])]
    last = widths[-1] if widths else n_in
    return [*layers, Layer(last * n_out, n_out, n_out)]


def _supervised(net: Net, parameters: int) -> _Work:
    return _Work(
        step_macs=net.forward + net.backward(input_grad=False),
        dry_eval_macs=DRY_RUN_SAMPLES * net.forward,
        saved=net.saved,
        largest_output=net.largest_output,
        groups=((parameters, None),),
    )


def _mlp(spec: MLPSpec, info: DatasetInfo) -> _Work:
    problem = spec.problem(info)
    n_in = problem.input_shape[0]
    net = Net(tuple(_linear_chain(n_in, spec.hidden_sizes, problem.output_size, spec.dropout)), n_in)
    return _supervised(net, spec.num_parameters(info))


def _conv_output(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _cnn(spec: CNNSpec, info: DatasetInfo) -> _Work:
    problem = spec.problem(info)
    channels, height, width = problem.input_shape
    layers = []
    for block in spec.conv_blocks:
        height = _conv_output(height, block.kernel_size, block.stride, block.padding)
        width = _conv_output(width, block.kernel_size, block.stride, block.padding)
        outputs = block.channels * height * width
        macs = outputs * channels * block.kernel_size**2
        layers.append(Layer(macs, _CONV_SAVED_PER_OUTPUT * outputs, outputs))
        if block.pool != "none":
            height, width = height // 2, width // 2
        channels = block.channels
    flat = channels * height * width
    layers += _linear_chain(flat, spec.hidden_sizes, problem.output_size, spec.dropout)
    return _supervised(Net(tuple(layers), prod(problem.input_shape)), spec.num_parameters(info))


def _rnn(spec: RNNSpec, info: DatasetInfo) -> _Work:
    problem = spec.problem(info)
    steps, n_in = problem.input_shape
    directions, gates, hidden = 2 if spec.bidirectional else 1, _GATES[spec.cell], spec.hidden_size
    layers = []
    for _ in range(spec.num_layers):
        # The input projection of every step, then the recurrence: the first layer's input is data.
        projected = steps * directions * gates * hidden  # (T, gates·H) per direction, all steps at once
        layers.append(Layer(projected * n_in, 0, projected))
        states = steps * directions * hidden
        recurrence = steps * directions * gates * hidden * hidden
        layers.append(Layer(recurrence, _RNN_SAVED_PER_UNIT[spec.cell] * states, states))
        n_in = directions * hidden
    outputs = steps if problem.per_step_output else 1
    head = outputs * problem.output_size
    layers.append(Layer(head * n_in, head, head))
    return _supervised(Net(tuple(layers), steps * problem.input_shape[1]), spec.num_parameters(info))


def _body(body: MLPBodySpec | ConvBodySpec, *, generator: bool, latent: int, shape: tuple[int, ...]) -> Net:
    if body.kind == "mlp":
        n_in, n_out = (latent, prod(shape)) if generator else (prod(shape), 1)
        return Net(tuple(_linear_chain(n_in, body.hidden_sizes, n_out)), n_in)
    channels, height, width = shape
    base, half = body.channels, body.channels // 2
    quarter, halves = (height // 4) * (width // 4), (height // 2) * (width // 2)  # pixels at H/4, H/2
    per = _CONV_SAVED_PER_OUTPUT
    if generator:  # Linear(z → base·H/4·W/4), ConvT(base → half) to H/2×W/2, ConvT(half → C) to H×W
        layers = (
            Layer(latent * base * quarter, per * base * quarter, base * quarter),
            Layer(base * quarter * half * 16, per * half * halves, half * halves),
            Layer(half * halves * channels * 16, prod(shape), prod(shape)),
        )
        return Net(layers, latent)
    layers = (  # Conv(C → half) to H/2×W/2, Conv(half → base) to H/4×W/4, Linear(base·H/4·W/4 → 1)
        Layer(half * halves * channels * 16, per * half * halves, half * halves),
        Layer(base * quarter * half * 16, per * base * quarter, base * quarter),
        Layer(base * quarter, 1, 1),
    )
    return Net(layers, prod(shape))


def _gan(spec: GANSpec, info: DatasetInfo) -> _Work:
    shape = spec.problem(info).input_shape
    g = _body(spec.generator, generator=True, latent=spec.latent_dim, shape=shape)
    d = _body(spec.discriminator, generator=False, latent=spec.latent_dim, shape=shape)
    # D's step: G makes fakes (detached), D on real and fake, D's backward on both; then G's step: G and D
    # forward, the gradient back through D (its weights too) into G.
    d_step = g.forward + 2 * (d.forward + d.backward(input_grad=False))
    g_step = g.forward + d.forward + d.backward(input_grad=True) + g.backward(input_grad=False)
    return _Work(
        step_macs=spec.d_steps * d_step + g_step,
        dry_eval_macs=DRY_RUN_SAMPLES * d.forward + GAN_EVAL_SAMPLES * (g.forward + d.forward),
        saved=max(2 * d.saved, g.saved + d.saved),
        largest_output=max(g.largest_output, d.largest_output),
        groups=(
            (spec.generator.generator_parameters(spec.latent_dim, shape), None),
            (spec.discriminator.discriminator_parameters(shape), spec.discriminator_optimizer),
        ),
    )


# Each architecture's spec and how to count its work (tests/models/test_cost.py covers every arch).
_WORK: dict[type, Callable[[Any, DatasetInfo], _Work]] = {
    MLPSpec: _mlp,
    CNNSpec: _cnn,
    RNNSpec: _rnn,
    GANSpec: _gan,
}
