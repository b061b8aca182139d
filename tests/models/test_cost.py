"""The cost estimate against what torch does: parameter counts, FLOPs counted by torch's FlopCounterMode over
a real training step, and memory against the resident high-water mark of a real run in a fresh process."""

import json
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import cost
from models.archs.gan import QUALITY_SAMPLES
from models.assemble import build_network, build_optimizers
from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.dry_check import SAMPLES
from models.errors import SpecError
from models.procedures import EVAL_BATCH_SIZE, StepContext
from models.specs import JobSpec, arch_specs
from models.templates import TEMPLATES

MEASURE = Path(__file__).with_name("cost_memory.py")


def _step_flops_counted(spec: JobSpec, info: DatasetInfo, batch: int) -> int:
    """FLOPs torch's counter sees in one training step of the real network on `batch` samples."""
    torch.manual_seed(0)
    network = build_network(spec, info)
    procedure = network.architecture.procedure
    built = build_optimizers(spec, procedure, network.module, steps_per_epoch=1)
    ctx = StepContext(
        network.module, built.optimizers, info.task, spec.model, nullcontext, None, built.grad_clip_norm
    )
    x = torch.randn(batch, *network.problem.input_shape)
    y = torch.arange(batch) % (info.num_classes or 1) if info.task == "classification" else None
    with FlopCounterMode(display=False) as counter:
        procedure.train_step(ctx, x, y)
    return int(counter.get_total_flops())


def test_the_constants_it_mirrors_match_the_engine() -> None:
    assert (cost.DRY_RUN_SAMPLES, cost.EVAL_BATCH_SIZE, cost.GAN_EVAL_SAMPLES) == (
        SAMPLES,
        EVAL_BATCH_SIZE,
        QUALITY_SAMPLES,
    )


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_the_parameter_count_is_the_built_networks(template: str) -> None:
    spec = JobSpec.model_validate(TEMPLATES[template])
    info = BUILTIN_DATASETS[spec.dataset.name or ""]
    network = build_network(spec, info).module
    assert cost.estimate(spec, info).parameters == sum(p.numel() for p in network.parameters())


def test_every_architecture_has_a_cost() -> None:
    assert set(arch_specs()) == {spec.model_fields["arch"].default for spec in cost._WORK}


def test_an_mlp_steps_flops_are_the_exact_formula() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden_sizes": [32, 16]},
            "training": {"batch_size": 8},
        }
    )
    info = BUILTIN_DATASETS["digits"]
    forward = 64 * 32 + 32 * 16 + 16 * 10
    # forward + weight gradients + input gradients of every layer but the first (its input is data)
    expected = 2 * 8 * (3 * forward - 64 * 32)
    assert cost.estimate(spec, info).step_flops == expected == _step_flops_counted(spec, info, 8)


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "cnn", "conv_blocks": [{"channels": 4}, {"channels": 6, "stride": 2, "pool": "none"}]},
        {
            "arch": "cnn",
            "batch_norm": True,
            "hidden_sizes": [],
            "conv_blocks": [{"channels": 3, "kernel_size": 5, "padding": 2}],
        },
        {
            "arch": "gan",
            "latent_dim": 5,
            "generator": {"hidden_sizes": [7]},
            "discriminator": {"hidden_sizes": [6, 4]},
        },
        {
            "arch": "gan",
            "d_steps": 2,
            "generator": {"kind": "conv", "channels": 8},
            "discriminator": {"kind": "conv", "channels": 6},
        },
    ],
)
def test_step_flops_equal_torchs_count_of_a_real_step(model: dict) -> None:
    spec = JobSpec.model_validate(
        {"dataset": {"name": "digits"}, "model": model, "training": {"batch_size": 8}}
    )
    info = BUILTIN_DATASETS["digits"]
    assert cost.estimate(spec, info).step_flops == _step_flops_counted(spec, info, 8)


@pytest.mark.parametrize(("cell", "bidirectional"), [("lstm", False), ("gru", True), ("rnn", False)])
def test_rnn_flops_are_the_sequence_length_times_a_steps_matrix_products(
    cell: str, bidirectional: bool
) -> None:
    # torch counts no FLOPs inside its CPU RNN kernels: count the real module's weight matrices instead.
    info = DatasetInfo(
        name="seq", task="classification", num_samples=100, sample_shape=(30, 3), num_classes=2
    )
    model = {"arch": "rnn", "cell": cell, "hidden_size": 12, "num_layers": 2, "bidirectional": bidirectional}
    spec = JobSpec.model_validate(
        {"dataset": {"name": "digits"}, "model": model, "training": {"batch_size": 4}}
    )
    network = build_network(spec, info).module
    weights = dict(network.named_parameters())
    per_step = sum(w.numel() for name, w in weights.items() if name.startswith("recurrent.weight_"))
    first_input = sum(w.numel() for name, w in weights.items() if name.startswith("recurrent.weight_ih_l0"))
    forward = 30 * per_step + weights["head.weight"].numel()
    assert cost.estimate(spec, info).step_flops == 2 * 4 * (3 * forward - 30 * first_input)


def test_the_sequence_length_multiplies_the_cost() -> None:
    model = {"arch": "rnn", "cell": "lstm", "hidden_size": 64}
    spec = JobSpec.model_validate({"dataset": {"name": "digits"}, "model": model})
    short, long = (
        cost.estimate(
            spec,
            DatasetInfo(name="s", task="classification", num_samples=20, sample_shape=(t, 1), num_classes=2),
        )
        for t in (100, 1000)
    )
    assert long.sample_flops == pytest.approx(10 * short.sample_flops, rel=0.01)
    assert long.activation_bytes > 9 * short.activation_bytes


def test_limits_refuse_naming_the_estimate_the_limit_and_the_field() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden_sizes": [2048, 2048]},
            "training": {"batch_size": 1024},
        }
    )
    estimate = cost.estimate(spec, BUILTIN_DATASETS["digits"])
    with pytest.raises(SpecError) as refused:
        cost.check_cost(
            estimate, cost.CostLimits(max_step_flops=10**9, max_memory_bytes=10**6, max_dry_run_flops=10**15)
        )
    issues = {issue.field: issue for issue in refused.value.issues}
    assert issues.keys() == {"training.batch_size", "model"}  # the parameters alone exceed the memory limit
    step = issues["training.batch_size"]
    assert step.value == estimate.step_flops and "MAX_STEP_FLOPS (1e+09)" in step.reason
    assert f"a batch_size up to {10**9 // estimate.sample_flops:,} fits" in step.reason
    assert (
        issues["model"].value == estimate.memory_bytes
        and "MAX_JOB_MEMORY_BYTES (1,000,000)" in issues["model"].reason
    )
    cost.check_cost(
        estimate, cost.CostLimits(max_step_flops=10**15, max_memory_bytes=10**12, max_dry_run_flops=10**15)
    )


@pytest.mark.parametrize(
    "case",
    [
        # activations dominate: an LSTM over 400 steps
        {
            "model": {"arch": "rnn", "cell": "lstm", "hidden_size": 128},
            "shape": [400, 4],
            "batch_size": 64,
            "n": 64,
        },
        # parameters, Adam's state and a checkpoint of both
        {"model": {"arch": "mlp", "hidden_sizes": [2048, 2048]}, "shape": [784], "batch_size": 64, "n": 400},
    ],
    ids=["lstm", "mlp"],
)
def test_memory_is_within_a_factor_of_1_6_of_a_real_runs_peak(case: dict) -> None:
    run = subprocess.run(
        [sys.executable, str(MEASURE), json.dumps(case)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout.splitlines()[-1])
    ratio = measured["estimated"] / measured["peak"]
    assert 1 / 1.6 < ratio < 1.6, measured
