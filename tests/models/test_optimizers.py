"""Every optimizer's update rule written out by hand on a linear least-squares problem, the learning-rate
multiplier against its formulas, and the schedule as fit() really applies it."""

import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from models.dataset_info import DatasetInfo
from models.optim import Kernel, build_optimizer, build_scheduler, lr_multiplier
from models.procedures import SUPERVISED, StepContext, step_metrics
from models.raw_dataset import RawDataset
from models.registry import get_architecture
from models.specs import parse_job_spec
from models.train import fit

STEPS = 5
INFO = DatasetInfo(name="lsq", task="regression", num_samples=6, sample_shape=(3,), target_shape=(2,))


def _spec(optimizer: dict, training: dict | None = None, dataset: str = "moons"):
    return parse_job_spec(
        {
            "dataset": {"name": dataset},
            "model": {"arch": "mlp", "hidden_sizes": []},
            "optimizer": optimizer,
            "training": training or {},
        }
    )


def _problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 3)), rng.standard_normal((6, 2))


def _mean_gradient(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(1/m) Σᵢ ∂Lᵢ/∂θ for Lᵢ = (1/k)‖W xᵢ + b − yᵢ‖², one sample at a time."""
    k = y.shape[1]
    gw, gb = np.zeros_like(w), np.zeros_like(b)
    for xi, yi in zip(x, y, strict=True):
        r = w @ xi + b - yi
        gw += 2 / k * np.outer(r, xi)
        gb += 2 / k * r
    return gw / len(x), gb / len(x)


class HandSGD:
    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.lr, self.mu, self.nesterov, self.wd = lr, momentum, nesterov, weight_decay
        self.v: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:
        grads = [g + self.wd * p for p, g in zip(params, grads, strict=True)]
        if not self.mu:
            return [p - self.lr * g for p, g in zip(params, grads, strict=True)]
        v = self.v or [np.zeros_like(p) for p in params]
        self.v = [self.mu * vi + g for vi, g in zip(v, grads, strict=True)]  # v ← μv + g
        if self.nesterov:  # W ← W − η(g + μv)
            return [p - self.lr * (g + self.mu * vi) for p, g, vi in zip(params, grads, self.v, strict=True)]
        return [p - self.lr * vi for p, vi in zip(params, self.v, strict=True)]  # W ← W − ηv


class HandAdaGrad:
    def __init__(self, lr: float, eps: float, weight_decay: float = 0.0):
        self.lr, self.eps, self.wd = lr, eps, weight_decay
        self.acc: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:
        grads = [g + self.wd * p for p, g in zip(params, grads, strict=True)]
        self.acc = [a + g**2 for a, g in zip(self.acc or [0.0 * p for p in params], grads, strict=True)]
        return [
            p - self.lr * g / (np.sqrt(a) + self.eps) for p, g, a in zip(params, grads, self.acc, strict=True)
        ]


class HandRMSProp:
    def __init__(self, lr: float, alpha: float, eps: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.lr, self.alpha, self.eps, self.mu, self.wd = lr, alpha, eps, momentum, weight_decay
        self.avg: list[np.ndarray] | None = None
        self.buf: list[np.ndarray] | None = None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:
        grads = [g + self.wd * p for p, g in zip(params, grads, strict=True)]
        self.avg = [
            self.alpha * e + (1 - self.alpha) * g**2  # E ← αE + (1−α)g²
            for e, g in zip(self.avg or [0.0 * p for p in params], grads, strict=True)
        ]
        scaled = [g / (np.sqrt(e) + self.eps) for g, e in zip(grads, self.avg, strict=True)]
        if not self.mu:
            return [p - self.lr * s for p, s in zip(params, scaled, strict=True)]
        self.buf = [
            self.mu * bf + s for bf, s in zip(self.buf or [0.0 * p for p in params], scaled, strict=True)
        ]
        return [p - self.lr * bf for p, bf in zip(params, self.buf, strict=True)]


class HandAdam:
    def __init__(self, lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0):
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.m: list[np.ndarray] | None = None
        self.v: list[np.ndarray] | None = None
        self.t = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:
        grads = [g + self.wd * p for p, g in zip(params, grads, strict=True)]
        self.t += 1
        zeros = [0.0 * p for p in params]
        self.m = [self.b1 * m + (1 - self.b1) * g for m, g in zip(self.m or zeros, grads, strict=True)]
        self.v = [self.b2 * v + (1 - self.b2) * g**2 for v, g in zip(self.v or zeros, grads, strict=True)]
        out = []
        for p, m, v in zip(params, self.m, self.v, strict=True):
            m_hat, v_hat = m / (1 - self.b1**self.t), v / (1 - self.b2**self.t)
            out.append(p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps))
        return out


CASES = {
    "sgd": ({"name": "sgd", "lr": 0.1}, lambda: HandSGD(0.1)),
    "sgd-weight-decay": (
        {"name": "sgd", "lr": 0.1, "weight_decay": 0.05},
        lambda: HandSGD(0.1, weight_decay=0.05),
    ),
    "momentum": ({"name": "momentum", "lr": 0.05, "momentum": 0.9}, lambda: HandSGD(0.05, 0.9)),
    "momentum-nesterov": (
        {"name": "momentum", "lr": 0.05, "momentum": 0.8, "nesterov": True},
        lambda: HandSGD(0.05, 0.8, nesterov=True),
    ),
    "momentum-weight-decay": (
        {"name": "momentum", "lr": 0.05, "momentum": 0.7, "weight_decay": 0.1},
        lambda: HandSGD(0.05, 0.7, weight_decay=0.1),
    ),
    "adagrad": ({"name": "adagrad", "lr": 0.2, "eps": 1e-3}, lambda: HandAdaGrad(0.2, 1e-3)),
    "adagrad-weight-decay": (
        {"name": "adagrad", "lr": 0.2, "eps": 1e-3, "weight_decay": 0.1},
        lambda: HandAdaGrad(0.2, 1e-3, weight_decay=0.1),
    ),
    "rmsprop": (
        {"name": "rmsprop", "lr": 0.01, "alpha": 0.9, "eps": 1e-4},
        lambda: HandRMSProp(0.01, 0.9, 1e-4),
    ),
    "rmsprop-momentum": (
        {"name": "rmsprop", "lr": 0.01, "alpha": 0.9, "eps": 1e-4, "momentum": 0.5},
        lambda: HandRMSProp(0.01, 0.9, 1e-4, momentum=0.5),
    ),
    "adam": (
        {"name": "adam", "lr": 0.05, "betas": [0.8, 0.95], "eps": 1e-3},
        lambda: HandAdam(0.05, (0.8, 0.95), 1e-3),
    ),
    "adam-weight-decay": (
        {"name": "adam", "lr": 0.05, "betas": [0.8, 0.95], "eps": 1e-3, "weight_decay": 0.2},
        lambda: HandAdam(0.05, (0.8, 0.95), 1e-3, weight_decay=0.2),
    ),
}


@pytest.mark.parametrize("kernel", ["auto", "torch_default"])  # auto: fused where torch has it (CPU)
@pytest.mark.parametrize("case", list(CASES))
def test_step_optimizer_matches_hand_update_rule(case: str, kernel: Kernel) -> None:
    optimizer_dict, make_hand = CASES[case]
    spec = _spec(optimizer_dict)
    torch.manual_seed(0)
    network = get_architecture("mlp").build(spec.model, spec.model.problem(INFO)).double()
    (linear,) = network.layers  # no hidden layers: ŷ = W x + b
    optimizer = build_optimizer(spec.optimizer, list(network.parameters()), kernel)
    ctx = StepContext(network, {"model": optimizer}, "regression", spec.model, nullcontext)
    x, y = _problem()
    hand = make_hand()
    params = [linear.weight.detach().numpy().copy(), linear.bias.detach().numpy().copy()]
    for step in range(STEPS):
        # the service's own supervised step: MSE on the batch mean, then the optimizer
        outputs = SUPERVISED.train_step(ctx, torch.from_numpy(x), torch.from_numpy(y))
        assert step_metrics(SUPERVISED, [outputs])["loss"].item() == pytest.approx(
            np.mean((x @ params[0].T + params[1] - y) ** 2), abs=1e-12
        )
        params = hand.step(params, list(_mean_gradient(*params, x, y)))
        np.testing.assert_allclose(
            linear.weight.detach().numpy(),
            params[0],
            rtol=0,
            atol=1e-12,
            err_msg=f"weight after step {step + 1}",
        )
        np.testing.assert_allclose(
            linear.bias.detach().numpy(), params[1], rtol=0, atol=1e-12, err_msg=f"bias after step {step + 1}"
        )


@pytest.mark.parametrize(
    ("name", "fused"),
    [("sgd", True), ("momentum", True), ("adagrad", True), ("rmsprop", False), ("adam", True)],
)
def test_build_optimizer_picks_the_fused_kernel_on_the_cpu_where_torch_has_it(name: str, fused: bool) -> None:
    spec = _spec({"name": name})
    optimizer = build_optimizer(spec.optimizer, [torch.nn.Parameter(torch.zeros(3))])
    assert bool(optimizer.defaults.get("fused")) is fused


def test_build_optimizer_falls_back_to_torch_default_for_parameters_on_two_devices() -> None:
    spec = _spec({"name": "adam"})
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert not build_optimizer(spec.optimizer, params).defaults["fused"]


def test_step_sgd_uses_the_mean_not_the_sum_of_per_sample_gradients() -> None:
    spec = _spec({"name": "sgd", "lr": 0.1})
    network = get_architecture("mlp").build(spec.model, spec.model.problem(INFO)).double()
    (linear,) = network.layers
    optimizer = build_optimizer(spec.optimizer, list(network.parameters()))
    ctx = StepContext(network, {"model": optimizer}, "regression", spec.model, nullcontext)
    x, y = _problem()
    w, b = linear.weight.detach().numpy().copy(), linear.bias.detach().numpy().copy()
    SUPERVISED.train_step(ctx, torch.from_numpy(x), torch.from_numpy(y))
    delta = w - linear.weight.detach().numpy()
    gw, _ = _mean_gradient(w, b, x, y)
    np.testing.assert_allclose(delta, 0.1 * gw, rtol=0, atol=1e-12)
    assert not np.allclose(delta, 0.1 * gw * len(x), atol=1e-6)  # the sum would be m times larger


# ------------------------------------------------------------------------------------------ lr schedules


def _optimizer_spec(optimizer: dict):
    return _spec({"name": "sgd", "lr": 0.1, **optimizer}).optimizer


def test_lr_multiplier_linear_warmup_then_constant() -> None:
    factor = lr_multiplier(_optimizer_spec({"warmup_steps": 4}), steps_per_epoch=10, total_steps=100)
    # from 0 towards lr in equal increments: the k-th step (from 0) runs at (k + 1)/warmup
    assert [factor(k) for k in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(factor(k) == 1.0 for k in range(4, 100))


def test_lr_multiplier_without_schedule_is_one() -> None:
    factor = lr_multiplier(_optimizer_spec({}), steps_per_epoch=3, total_steps=30)
    assert all(factor(k) == 1.0 for k in range(31))


def test_lr_multiplier_step_decay_every_step_size_epochs() -> None:
    spe, step_size, gamma = 7, 2, 0.3
    factor = lr_multiplier(
        _optimizer_spec({"schedule": {"kind": "step", "step_size": step_size, "gamma": gamma}}),
        steps_per_epoch=spe,
        total_steps=spe * 10,
    )
    for k in range(spe * 10):
        epoch = k // spe  # the epoch (from 0) that step k belongs to
        assert factor(k) == pytest.approx(gamma ** (epoch // step_size), rel=1e-12), k
    assert factor(spe * step_size - 1) == 1.0
    assert factor(spe * step_size) == pytest.approx(gamma)


@pytest.mark.parametrize("floor", [0.0, 0.1])
@pytest.mark.parametrize("warmup", [0, 5])
def test_lr_multiplier_cosine_annealing(floor: float, warmup: int) -> None:
    total = warmup + 40
    factor = lr_multiplier(
        _optimizer_spec({"schedule": {"kind": "cosine", "min_lr_ratio": floor}, "warmup_steps": warmup}),
        steps_per_epoch=8,
        total_steps=total,
    )
    for k in range(warmup, total + 3):
        t = min(k - warmup, total - warmup) / (total - warmup)
        assert factor(k) == pytest.approx(floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2, abs=1e-12), k
    assert factor(warmup) == pytest.approx(1.0)
    assert factor(warmup + 20) == pytest.approx((1 + floor) / 2)
    assert factor(total) == pytest.approx(floor, abs=1e-12)


SCHEDULES = {
    "warmup": {"warmup_steps": 6},
    "step": {"schedule": {"kind": "step", "step_size": 1, "gamma": 0.5}},
    "cosine-warmup": {"schedule": {"kind": "cosine", "min_lr_ratio": 0.2}, "warmup_steps": 3},
}


def _expected_factor(optimizer: dict, k: int, spe: int, total: int) -> float:
    """The multiplier at optimizer step k (from 0), written out independently of models.optim."""
    warmup = optimizer.get("warmup_steps", 0)
    schedule = optimizer.get("schedule")
    if k < warmup:
        return (k + 1) / warmup
    if schedule is None:
        return 1.0
    if schedule["kind"] == "step":
        return schedule["gamma"] ** ((k // spe) // schedule["step_size"])
    t = min(1.0, (k - warmup) / (total - warmup))
    floor = schedule["min_lr_ratio"]
    return floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_build_scheduler_lambda_lr_over_steps(name: str) -> None:
    spec = _optimizer_spec(SCHEDULES[name])
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer(spec, [param])
    scheduler = build_scheduler(optimizer, spec, steps_per_epoch=4, total_steps=20)
    assert scheduler is not None
    for k in range(20):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(
            0.1 * _expected_factor(SCHEDULES[name], k, 4, 20)
        )
        optimizer.step()
        scheduler.step()


def test_schedule_build_scheduler_none_without_schedule_or_warmup() -> None:
    spec = _optimizer_spec({})
    optimizer = build_optimizer(spec, [torch.nn.Parameter(torch.zeros(1))])
    assert build_scheduler(optimizer, spec, steps_per_epoch=4, total_steps=20) is None


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_fit_applies_schedule_to_each_optimizer_step(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the lr every step of a real fit() actually uses, and check each SGD update is −lr_k·grad."""
    n, batch_size, epochs, base_lr = 40, 8, 3, 0.05
    spe = n // batch_size
    rng = np.random.default_rng(1)
    raw = RawDataset(
        info=DatasetInfo(name="toy", task="regression", num_samples=n, sample_shape=(3,), target_shape=(1,)),
        x=rng.standard_normal((n, 3)).astype(np.float32),
        y=rng.standard_normal((n, 1)).astype(np.float32),
    )
    optimizer_dict = {"name": "sgd", "lr": base_lr, **SCHEDULES[name]}
    spec = _spec(
        optimizer_dict,
        {
            "epochs": epochs,
            "batch_size": batch_size,
            "validation_fraction": 0.0,
            "test_fraction": 0.0,
            "device": "cpu",
            "checkpoint": {"every_epochs": 1},
        },
    )
    used_lrs: list[float] = []
    mismatches: list[float] = []
    built = []

    def recording_build_optimizer(opt_spec, params, kernel="auto"):
        optimizer = build_optimizer(opt_spec, params, kernel)
        before: list[torch.Tensor] = []

        def pre(opt, args, kwargs):
            used_lrs.append(opt.param_groups[0]["lr"])
            before[:] = [p.detach().clone() for p in opt.param_groups[0]["params"]]

        def post(opt, args, kwargs):
            lr = opt.param_groups[0]["lr"]
            for p, old in zip(opt.param_groups[0]["params"], before, strict=True):
                mismatches.append((old - lr * p.grad - p.detach()).abs().max().item())

        optimizer.register_step_pre_hook(pre)
        optimizer.register_step_post_hook(post)
        built.append(optimizer)
        return optimizer

    monkeypatch.setattr("models.assemble.build_optimizer", recording_build_optimizer)
    epoch_end_lrs: list[float] = []

    class EpochLR:
        def on_step(self, report):
            pass

        def on_epoch(self, report):
            pass

        def on_checkpoint(self, checkpoint, report):
            if report is not None:
                epoch_end_lrs.append(checkpoint["optimizers"]["model"]["param_groups"][0]["lr"])

        def should_stop(self):
            return False

    result = fit(spec, hook=EpochLR(), dataset=raw)
    assert result.status == "completed" and len(built) == 1
    total = spe * epochs
    expected = [base_lr * _expected_factor(optimizer_dict, k, spe, total) for k in range(total)]
    assert used_lrs == pytest.approx(expected, rel=1e-12)
    assert len(set(np.round(used_lrs, 12))) > 1  # the schedule really changes the rate
    assert max(mismatches) < 1e-6  # each step moved the parameters by exactly −lr_k·∇L (float32)
    # the checkpoint at the end of epoch e holds the rate of the next step, e·spe
    assert epoch_end_lrs == pytest.approx(
        [base_lr * _expected_factor(optimizer_dict, e * spe, spe, total) for e in range(1, epochs + 1)],
        rel=1e-12,
    )
