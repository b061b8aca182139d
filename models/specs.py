"""Job specs: what to train, on what, how. Pydantic v2, torch-free, published as JSON Schema.

Every field is typed, bounded (see `models.limits`) and defaulted where a sensible default exists. Each model
spec knows the input view it needs and its parameter count for a dataset, computed without allocating.
"""

import itertools
from math import prod
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from models import limits
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.errors import SpecError, SpecIssue

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu", "gelu"]
Width = Annotated[int, Field(ge=1, le=limits.MAX_WIDTH)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
LearningRate = Annotated[float, Field(gt=0.0, le=limits.MAX_LEARNING_RATE)]


def _tags_required(schema: dict[str, Any]) -> None:
    """List union tags (`arch`, `name`, `kind`) as required in the published schema, so generated clients
    always send them, even where the server would fill in a default."""
    properties = schema.get("properties", {})
    tags = [t for t in ("arch", "name", "kind") if "const" in properties.get(t, {})]
    if tags:
        schema["required"] = sorted(set(schema.get("required", [])) | set(tags))


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra=_tags_required)


def _linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _mlp_params(n_in: int, hidden_sizes: list[int], n_out: int) -> int:
    sizes = [n_in, *hidden_sizes, n_out]
    return sum(_linear_params(a, b) for a, b in itertools.pairwise(sizes))


def _image_view(arch_field: str, info: DatasetInfo) -> tuple[int, int, int]:
    shape = info.sample_shape
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    raise SpecError.single(
        arch_field,
        shape,
        f"needs image samples (H×W or C×H×W); dataset '{info.name}' has samples of shape {shape}",
    )


class ArchSpec(Spec):
    """An architecture's spec: a member of the `ModelSpec` union, with its starter jobs."""

    # Template name -> a job spec that learns in under a minute on a CPU (models/templates.py collects them).
    templates: ClassVar[dict[str, dict[str, Any]]]
    # It learns to generate samples (no inputs, no targets); read where torch may not be imported (the API).
    generative: ClassVar[bool] = False


class Problem(BaseModel):
    """What a network must map: the input view it receives and the size of its output."""

    input_shape: tuple[int, ...]
    output_size: int
    per_step_output: bool = False  # RNN regression: one output vector per time step


# ----------------------------------------------------------------------------------------------- models


class MLPSpec(ArchSpec):
    """Multilayer perceptron: hidden layers h = f(W h + b), then a linear output layer."""

    arch: Literal["mlp"] = "mlp"
    hidden_sizes: list[Width] = Field(default_factory=lambda: [128, 64], max_length=limits.MAX_LAYERS)
    activation: Activation = "relu"
    dropout: Probability = 0.0

    templates = {
        "mlp": {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden_sizes": [256, 128], "activation": "gelu", "dropout": 0.2},
            "optimizer": {"name": "adam", "lr": 0.001},
            "training": {"epochs": 30, "batch_size": 64, "seed": 0},
        },
    }

    def problem(self, info: DatasetInfo) -> Problem:
        return Problem(input_shape=(info.num_features,), output_size=_supervised_output_size(info))

    def num_parameters(self, info: DatasetInfo) -> int:
        problem = self.problem(info)
        return _mlp_params(problem.input_shape[0], self.hidden_sizes, problem.output_size)


class ConvBlockSpec(Spec):
    channels: Annotated[int, Field(ge=1, le=limits.MAX_CHANNELS)] = 16
    kernel_size: Annotated[int, Field(ge=1, le=limits.MAX_KERNEL_SIZE)] = 3
    stride: Annotated[int, Field(ge=1, le=4)] = 1
    padding: Annotated[int, Field(ge=0, le=limits.MAX_KERNEL_SIZE // 2)] = 1
    pool: Literal["max", "avg", "none"] = "max"  # 2×2 pooling with stride 2 after the activation


class CNNSpec(ArchSpec):
    """Convolution blocks (conv → [batch norm] → activation → pool), then fully connected layers."""

    arch: Literal["cnn"] = "cnn"
    conv_blocks: list[ConvBlockSpec] = Field(
        default_factory=lambda: [ConvBlockSpec(channels=16), ConvBlockSpec(channels=32)],
        min_length=1,
        max_length=limits.MAX_LAYERS,
    )
    activation: Activation = "relu"
    batch_norm: bool = False
    hidden_sizes: list[Width] = Field(default_factory=lambda: [64], max_length=limits.MAX_LAYERS)
    dropout: Probability = 0.0

    templates = {
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
    }

    def feature_map_shapes(self, info: DatasetInfo) -> list[tuple[int, int, int]]:
        """(C, H, W) after each block; raises SpecError naming the block where the map vanishes."""
        channels, height, width = _image_view("model.arch", info)
        shapes = []
        for index, block in enumerate(self.conv_blocks):
            height = (height + 2 * block.padding - block.kernel_size) // block.stride + 1
            width = (width + 2 * block.padding - block.kernel_size) // block.stride + 1
            if block.pool != "none":
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise SpecError.single(
                    f"model.conv_blocks.{index}",
                    block.model_dump(),
                    f"the feature map vanishes here ({height}×{width}) for {info.name}'s "
                    f"{info.sample_shape} samples: use fewer blocks, more padding or no pooling",
                )
            channels = block.channels
            shapes.append((channels, height, width))
        return shapes

    def problem(self, info: DatasetInfo) -> Problem:
        return Problem(input_shape=_image_view("model.arch", info), output_size=_supervised_output_size(info))

    def num_parameters(self, info: DatasetInfo) -> int:
        problem = self.problem(info)
        in_channels = problem.input_shape[0]
        total = 0
        for block in self.conv_blocks:
            total += in_channels * block.channels * block.kernel_size**2 + block.channels
            if self.batch_norm:
                total += 2 * block.channels
            in_channels = block.channels
        flat = prod(self.feature_map_shapes(info)[-1])
        return total + _mlp_params(flat, self.hidden_sizes, problem.output_size)


_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class RNNSpec(ArchSpec):
    """Recurrent network: h_t = f(W_h h_{t-1} + W_x x_t + b) (or an LSTM/GRU cell), then a linear head:
    the last state for sequence classification, y_t = W_y h_t + c at every step for per-step regression."""

    arch: Literal["rnn"] = "rnn"
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    nonlinearity: Literal["tanh", "relu"] = "tanh"  # vanilla cell only
    hidden_size: Annotated[int, Field(ge=1, le=limits.MAX_RNN_HIDDEN)] = 64
    num_layers: Annotated[int, Field(ge=1, le=limits.MAX_RNN_LAYERS)] = 1
    bidirectional: bool = False
    dropout: Probability = 0.0  # between stacked layers
    head: Literal["auto", "last", "per_step"] = "auto"

    templates = {
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
    }

    def problem(self, info: DatasetInfo) -> Problem:
        shape = info.sample_shape
        if len(shape) == 1:
            steps, features = shape[0], 1
        elif len(shape) == 2:
            steps, features = shape
        else:
            raise SpecError.single(
                "model.arch",
                "rnn",
                f"needs sequence samples (T×F); dataset '{info.name}' has samples of shape {shape}",
            )
        per_step = self._per_step(info, steps)
        if per_step:
            output_size = prod(info.target_shape[1:]) if len(info.target_shape) > 1 else 1
        else:
            output_size = _supervised_output_size(info)
        return Problem(input_shape=(steps, features), output_size=output_size, per_step_output=per_step)

    def _per_step(self, info: DatasetInfo, steps: int) -> bool:
        aligned = info.task == "regression" and len(info.target_shape) >= 1 and info.target_shape[0] == steps
        if self.head == "per_step" and not aligned:
            raise SpecError.single(
                "model.head",
                self.head,
                f"per-step outputs need a regression target with one value per step ({steps}); "
                f"dataset '{info.name}' has task {info.task} and targets of shape {info.target_shape}",
            )
        return self.head == "per_step" or (self.head == "auto" and aligned)

    def num_parameters(self, info: DatasetInfo) -> int:
        problem = self.problem(info)
        gates, directions = _GATES[self.cell], 2 if self.bidirectional else 1
        total, n_in = 0, problem.input_shape[1]
        for _ in range(self.num_layers):
            per_direction = (
                gates * self.hidden_size * (n_in + self.hidden_size) + 2 * gates * self.hidden_size
            )
            total += directions * per_direction
            n_in = self.hidden_size * directions
        return total + _linear_params(n_in, problem.output_size)


class MLPBodySpec(Spec):
    kind: Literal["mlp"] = "mlp"
    hidden_sizes: list[Width] = Field(default_factory=lambda: [128, 128], max_length=limits.MAX_LAYERS)
    activation: Activation = "leaky_relu"

    def generator_parameters(self, latent: int, shape: tuple[int, ...]) -> int:
        return _mlp_params(latent, self.hidden_sizes, prod(shape))

    def discriminator_parameters(self, shape: tuple[int, ...]) -> int:
        return _mlp_params(prod(shape), self.hidden_sizes, 1)


class ConvBodySpec(Spec):
    """DCGAN-style body for image data: two stride-2 (transposed) convolutions; H and W divisible by 4."""

    kind: Literal["conv"] = "conv"
    channels: Annotated[int, Field(ge=2, le=limits.MAX_CHANNELS)] = 64
    activation: Activation = "leaky_relu"

    def generator_parameters(self, latent: int, shape: tuple[int, ...]) -> int:
        # Linear(z → base·H/4·W/4), BN, ConvT(base → half), BN, ConvT(half → C)
        channels, height, width = shape
        base, half, quarter = self.channels, self.channels // 2, (height // 4) * (width // 4)
        return (
            _linear_params(latent, base * quarter)
            + 2 * base
            + (base * half * 16 + half)
            + 2 * half
            + (half * channels * 16 + channels)
        )

    def discriminator_parameters(self, shape: tuple[int, ...]) -> int:
        # Conv(C → half), Conv(half → base), BN, Linear(base·H/4·W/4 → 1)
        channels, height, width = shape
        base, half, quarter = self.channels, self.channels // 2, (height // 4) * (width // 4)
        return (
            (channels * half * 16 + half)
            + (half * base * 16 + base)
            + 2 * base
            + _linear_params(base * quarter, 1)
        )


def _body_kind(body: Any) -> str:
    return body.get("kind", "mlp") if isinstance(body, dict) else getattr(body, "kind", "mlp")


# `kind` may be left out and means "mlp".
GANBodySpec = Annotated[
    Annotated[MLPBodySpec, Tag("mlp")] | Annotated[ConvBodySpec, Tag("conv")], Discriminator(_body_kind)
]


class GANSpec(ArchSpec):
    """Generator G(z) and discriminator D(x) trained on min_G max_D E[log D(x)] + E[log(1 − D(G(z)))]."""

    arch: Literal["gan"] = "gan"
    generative: ClassVar[bool] = True
    latent_dim: Annotated[int, Field(ge=1, le=limits.MAX_LATENT_DIM)] = 16
    generator: GANBodySpec = Field(default_factory=MLPBodySpec)
    discriminator: GANBodySpec = Field(default_factory=MLPBodySpec)
    # minimax: G minimises E[log(1 − D(G(z)))] exactly as in the value function; it saturates early on.
    # non_saturating: G maximises E[log D(G(z))] instead, the usual practical choice.
    loss: Literal["minimax", "non_saturating"] = "non_saturating"
    d_steps: Annotated[int, Field(ge=1, le=limits.MAX_D_STEPS)] = 1
    discriminator_optimizer: "OptimizerSpec | None" = None  # default: the job's optimizer

    templates = {
        "gan": {
            "dataset": {"name": "gaussian-ring"},
            # Smooth (tanh) bodies cover all 8 modes; with leaky ReLU it drops modes or blurs (seed 0: 7).
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

    def problem(self, info: DatasetInfo) -> Problem:
        if info.task == "regression":
            raise SpecError.single(
                "model.arch",
                "gan",
                f"a GAN models input samples alone; dataset '{info.name}' is a {info.task} task "
                "whose meaning lies in its targets (use a classification or unlabelled dataset)",
            )
        uses_conv = "conv" in (self.generator.kind, self.discriminator.kind)
        if uses_conv:
            view: tuple[int, ...] = _image_view("model.generator.kind", info)
            if view[1] % 4 or view[2] % 4:
                raise SpecError.single(
                    "model.generator.kind",
                    "conv",
                    f"convolutional GAN bodies need H and W divisible by 4; dataset '{info.name}' has {view}",
                )
        else:
            view = (info.num_features,)
        return Problem(input_shape=view, output_size=1)

    def num_parameters(self, info: DatasetInfo) -> int:
        shape = self.problem(info).input_shape
        generator = self.generator.generator_parameters(self.latent_dim, shape)
        return generator + self.discriminator.discriminator_parameters(shape)


# Adding an architecture: its spec here, in this union, and its module, models/archs/<arch>.py, which
# registers its network and procedure; the registry, the catalog and the templates all follow this union.
ModelSpec = Annotated[MLPSpec | CNNSpec | RNNSpec | GANSpec, Field(discriminator="arch")]


def union_members(union: Any) -> list[type[Spec]]:
    """The spec classes of a discriminated union (`ModelSpec`, `OptimizerSpec`, ...), in declaration order."""
    members = get_args(get_args(union)[0])
    return [get_args(m)[0] if get_origin(m) is Annotated else m for m in members]


def arch_specs() -> dict[str, type[ArchSpec]]:
    """Each architecture's name (its `arch` tag) and spec class, in the union's order."""
    specs: dict[str, type[ArchSpec]] = {}
    for member in union_members(ModelSpec):
        assert issubclass(member, ArchSpec)
        specs[member.model_fields["arch"].default] = member
    return specs


def _supervised_output_size(info: DatasetInfo) -> int:
    if info.task == "classification":
        assert info.num_classes is not None
        return info.num_classes
    if info.task == "regression":
        return prod(info.target_shape) if info.target_shape else 1
    raise SpecError.single(
        "dataset",
        info.name,
        f"dataset '{info.name}' has no labels (task 'unlabelled'): only arch 'gan' can train on it",
    )


# -------------------------------------------------------------------------------------------- optimizers


class StepSchedule(Spec):
    kind: Literal["step"] = "step"
    step_size: Annotated[int, Field(ge=1, le=limits.MAX_EPOCHS)] = 10  # epochs between decays
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1


class CosineSchedule(Spec):
    kind: Literal["cosine"] = "cosine"  # from lr down to min_lr_ratio·lr over the whole run
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


ScheduleSpec = Annotated[StepSchedule | CosineSchedule, Field(discriminator="kind")]


class OptimizerBase(Spec):
    lr: LearningRate = 0.01
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    schedule: ScheduleSpec | None = None
    warmup_steps: Annotated[int, Field(ge=0, le=1_000_000)] = 0  # linear warm-up from 0 to lr
    grad_clip_norm: Annotated[float, Field(gt=0.0, le=1e6)] | None = None


class SGDSpec(OptimizerBase):
    """Minibatch SGD on the mean gradient: W ← W − η·(1/m)Σ∂Lᵢ/∂W."""

    name: Literal["sgd"] = "sgd"


class MomentumSpec(OptimizerBase):
    name: Literal["momentum"] = "momentum"
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "MomentumSpec":
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a momentum above 0")
        return self


class AdaGradSpec(OptimizerBase):
    name: Literal["adagrad"] = "adagrad"
    eps: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-10


class RMSPropSpec(OptimizerBase):
    name: Literal["rmsprop"] = "rmsprop"
    lr: LearningRate = 0.001
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.99
    eps: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-8
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class AdamSpec(OptimizerBase):
    name: Literal["adam"] = "adam"
    lr: LearningRate = 0.001
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (
        0.9,
        0.999,
    )
    eps: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-8


def _optimizer_name(optimizer: Any) -> str:
    return (
        optimizer.get("name", "adam") if isinstance(optimizer, dict) else getattr(optimizer, "name", "adam")
    )


# `name` may be left out and means "adam", the default optimizer, so `--set optimizer.lr=…` just works.
OptimizerSpec = Annotated[
    Annotated[SGDSpec, Tag("sgd")]
    | Annotated[MomentumSpec, Tag("momentum")]
    | Annotated[AdaGradSpec, Tag("adagrad")]
    | Annotated[RMSPropSpec, Tag("rmsprop")]
    | Annotated[AdamSpec, Tag("adam")],
    Discriminator(_optimizer_name),
]
GANSpec.model_rebuild()


# ------------------------------------------------------------------------------------ data and training


class DatasetRef(Spec):
    """Exactly one of: a built-in `name`, an uploaded dataset `id` (service), a local `path` (CLI only)."""

    name: str | None = Field(default=None, examples=sorted(BUILTIN_DATASETS))
    id: str | None = Field(default=None, max_length=64)
    path: str | None = Field(default=None, max_length=4096)
    label_column: str | None = Field(default=None, max_length=256)  # CSV files: the target column
    # CSV files without label_column: confirms that a column named like a target (label, y…) is a feature
    unlabelled: bool = False

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "DatasetRef":
        given = [key for key in ("name", "id", "path") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of name, id or path (got {given or 'none'})")
        if self.name is not None and self.name not in BUILTIN_DATASETS:
            raise ValueError(f"unknown built-in dataset {self.name!r}; built-ins: {sorted(BUILTIN_DATASETS)}")
        return self


class ObjectiveSpec(Spec):
    """The epoch metric that defines a job's best epoch: its best checkpoint, its "best" everywhere, early
    stopping (unless that names its own metric) and a sweep's objective."""

    metric: str = Field(max_length=64, examples=["val_accuracy", "val_loss"])
    mode: Literal["min", "max"]


class CheckpointSpec(Spec):
    """When checkpoints are written and how many are kept. The last one is always written; the best epoch's
    weights are written at the next write after it (a crash loses at most `every_seconds` of training, which
    the resumed run repeats bit for bit, best included)."""

    every_seconds: Annotated[float, Field(ge=1.0, le=86_400.0)] = 30.0
    every_epochs: Annotated[int, Field(ge=1, le=limits.MAX_EPOCHS)] | None = None  # as well as by time
    keep_last: Annotated[int, Field(ge=1, le=limits.MAX_KEPT_CHECKPOINTS)] = 2
    keep_best: Annotated[int, Field(ge=0, le=limits.MAX_KEPT_CHECKPOINTS)] = 1  # by the objective


class EarlyStoppingSpec(Spec):
    metric: str | None = Field(default=None, max_length=64)  # None: the job's objective
    mode: Literal["min", "max"] = "min"  # for `metric`; with no metric the objective's mode applies
    patience: Annotated[int, Field(ge=1, le=limits.MAX_EPOCHS)] = 5
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class TrainingSpec(Spec):
    epochs: Annotated[int, Field(ge=1, le=limits.MAX_EPOCHS)] = 10
    batch_size: Annotated[int, Field(ge=1, le=limits.MAX_BATCH_SIZE)] = 64
    seed: Annotated[int, Field(ge=0, le=limits.MAX_SEED)] = 0
    validation_fraction: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    test_fraction: Annotated[float, Field(ge=0.0, le=0.5)] = 0.2
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    # None: val_accuracy (max) for a classifier, val_loss (min) for regression, a GAN's quality where its
    # dataset has one; train_… without a validation split (models.objective)
    objective: ObjectiveSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None
    # A run whose training loss is diverging this many steps in a row stops as diverged: not finite, or
    # above divergence_factor × its first value (at least 1; a loss that grows so far never comes back).
    max_nonfinite_steps: Annotated[int, Field(ge=1, le=limits.MAX_NONFINITE_STEPS)] = 5
    divergence_factor: Annotated[float, Field(ge=2.0, le=1e12)] = 20.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16 autocast, CUDA only
    # fp32 matmuls and convolutions on TF32 tensor cores (CUDA, Ampere and later; ignored elsewhere)
    tf32: bool = True
    compile: bool = False  # torch.compile the training step's network (first steps pay the compilation)

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_every_is_every_epochs(cls, data: Any) -> Any:
        """`checkpoint_every: N`, the older spelling, means `checkpoint: {every_epochs: N}`."""
        if isinstance(data, dict) and "checkpoint_every" in data:
            data = dict(data)
            every = data.pop("checkpoint_every")
            checkpoint = data.get("checkpoint")
            data["checkpoint"] = {
                **(checkpoint if isinstance(checkpoint, dict) else {}),
                "every_epochs": every,
            }
        return data

    @model_validator(mode="after")
    def _precision_needs_gpu(self) -> "TrainingSpec":
        if self.device == "cpu" and self.precision != "fp32":
            raise ValueError(
                f"precision {self.precision!r} is CUDA-only autocast; use fp32 with device 'cpu'"
            )
        return self


class InitFromSpec(Spec):
    """Start from another job's checkpoint (a new job, unlike a resume): fine-tune it on new data, give it a
    new head for a new label set (`load: body`), or train it longer (`optimizer_state: keep`)."""

    job: str = Field(min_length=4, max_length=36, pattern=r"^[0-9A-Fa-f-]+$")  # an id or a unique prefix
    checkpoint: Literal["best", "latest"] | Annotated[int, Field(ge=1)] = "best"  # or a checkpoint id
    load: Literal["all", "body"] = "all"  # body: everything but the output layer(s), which start afresh
    freeze: Literal["none", "body"] = "none"  # body: only the output layer(s) train
    unfreeze_after_epochs: Annotated[int, Field(ge=1, le=limits.MAX_EPOCHS)] | None = None
    # keep: the parent's optimizer state, schedule position and random streams, so the same data and seed
    # continue the parent exactly ("train longer")
    optimizer_state: Literal["reset", "keep"] = "reset"
    # False: the body keeps the normalisation statistics it was trained with; True: fit them on this data
    refit_normalisation: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "InitFromSpec":
        if self.unfreeze_after_epochs is not None and self.freeze == "none":
            raise ValueError("unfreeze_after_epochs needs freeze: body")
        if self.optimizer_state == "keep" and self.load != "all":
            raise ValueError("optimizer_state keep continues the parent: it needs load: all")
        return self


class JobSpec(Spec):
    dataset: DatasetRef
    model: ModelSpec
    optimizer: OptimizerSpec = Field(default_factory=AdamSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    init_from: InitFromSpec | None = None  # the service resolves `job` to the owner's job (models.transfer)


# ------------------------------------------------------------------------------------------- validation


def parse_job_spec(raw: Any) -> JobSpec:
    """Validate a raw mapping into a JobSpec; every problem becomes a SpecIssue with a dotted field path."""
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:
        issues = [
            SpecIssue(dotted_path(raw, err["loc"]), err.get("input"), issue_reason(err))
            for err in error.errors(include_url=False)
        ]
        raise SpecError(issues) from None


def issue_reason(err: Any) -> str:
    """A pydantic error's message, reworded where pydantic's own wording hides the fix."""
    if err["type"] == "union_tag_not_found":
        return f"missing '{err['ctx']['discriminator'].strip(chr(39))}', which selects the kind"
    if err["type"] == "union_tag_invalid":
        return f"{err['ctx']['tag']!r} is not one of {err['ctx']['expected_tags']}"
    return str(err["msg"]).removeprefix("Value error, ")


def _tagged_union_choices(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = set(schema["choices"]) if schema.get("type") == "tagged-union" else set()
        return found.union(*(_tagged_union_choices(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_tagged_union_choices(value) for value in schema))
    return set()


# The tags pydantic inserts into error locations: the choices of every tagged union it validates a job with.
_UNION_TAGS = frozenset(_tagged_union_choices(JobSpec.__pydantic_core_schema__))


def dotted_path(raw: Any, loc: tuple[int | str, ...]) -> str:
    """Dotted path of a pydantic error location, without the union tags pydantic inserts ("model.mlp.…")."""
    parts, node = [], raw
    for key in loc:
        if isinstance(node, dict) and isinstance(key, str) and key not in node and key in _UNION_TAGS:
            continue  # a discriminated-union tag, not a field
        parts.append(str(key))
        node = (
            node.get(key)
            if isinstance(node, dict)
            else (node[key] if isinstance(node, list) and isinstance(key, int) and key < len(node) else None)
        )
    return ".".join(parts) or "spec"


def check_against_dataset(spec: JobSpec, info: DatasetInfo) -> int:
    """Check that the model fits the dataset and the parameter limit; returns the parameter count."""
    count = spec.model.num_parameters(info)
    if count > limits.MAX_PARAMETERS:
        raise SpecError.single(
            "model",
            count,
            f"the model has {count:,} parameters on dataset '{info.name}', over the limit of "
            f"{limits.MAX_PARAMETERS:,}",
        )
    return count
