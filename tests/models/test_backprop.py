"""Backpropagation checked against hand-written chain rules, gradcheck for every architecture, and the
recurrent cells and heads recomputed by hand from the modules' own weights."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from models.dataset_info import BUILTIN_DATASETS, DatasetInfo
from models.procedures import _loss
from models.registry import get_architecture
from models.specs import parse_job_spec

TOL = 1e-10


def _build(model: dict, info: DatasetInfo, dataset: str = "digits") -> tuple[nn.Module, object]:
    spec = parse_job_spec({"dataset": {"name": dataset}, "model": model}).model
    torch.manual_seed(0)
    network = get_architecture(spec.arch).build(spec, spec.problem(info)).double()
    return network, spec


def _linears(network: nn.Module) -> list[nn.Linear]:
    return [m for m in network.modules() if isinstance(m, nn.Linear)]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------- MLP backprop

_ACT = {
    "sigmoid": (
        lambda z: 1 / (1 + np.exp(-z)),
        lambda z: (1 / (1 + np.exp(-z))) * (1 - 1 / (1 + np.exp(-z))),
    ),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64)),
}


def _hand_backprop(
    weights: list[tuple[np.ndarray, np.ndarray]], act: str, x: np.ndarray, output_grad
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Forward h⁽ˡ⁾ = f(W⁽ˡ⁾ h⁽ˡ⁻¹⁾ + b⁽ˡ⁾) with a linear output layer, then the chain rule backwards.

    Column convention: h is (n_l, m). `output_grad(out)` returns ∂L/∂out (n_out, m)."""
    f, df = _ACT[act]
    hs, zs = [x.T], []
    for index, (w, b) in enumerate(weights):
        z = w @ hs[-1] + b[:, None]
        zs.append(z)
        hs.append(z if index == len(weights) - 1 else f(z))
    delta = output_grad(hs[-1])  # δ at the (linear) output layer
    grads: list[tuple[np.ndarray, np.ndarray]] = []
    for layer in range(len(weights) - 1, -1, -1):
        grads.append((delta @ hs[layer].T, delta.sum(axis=1)))  # ∂L/∂W = δ hᵀ, ∂L/∂b = Σ_batch δ
        if layer:
            delta = (weights[layer][0].T @ delta) * df(zs[layer - 1])
    return hs[-1].T, grads[::-1]


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_backprop_mlp_cross_entropy_matches_hand_chain_rule(act: str) -> None:
    info = DatasetInfo(name="toy", task="classification", num_samples=7, sample_shape=(3,), num_classes=3)
    network, _ = _build({"arch": "mlp", "hidden_sizes": [5, 4], "activation": act}, info)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64) * 1.5
    y = torch.tensor([0, 2, 1, 1, 0, 2, 2])
    m = len(x)

    loss = _loss(network(x), y, "classification")
    loss.backward()

    weights = [(_np(lin.weight), _np(lin.bias)) for lin in _linears(network)]
    assert [w.shape for w, _ in weights] == [(5, 3), (4, 5), (3, 4)]
    onehot = np.eye(3)[y.numpy()].T  # (classes, m)

    def ce_grad(out: np.ndarray) -> np.ndarray:
        p = np.exp(out - out.max(axis=0))
        p /= p.sum(axis=0)
        return (p - onehot) / m

    out, grads = _hand_backprop(weights, act, _np(x), ce_grad)
    logits = out - out.max(axis=1, keepdims=True)
    hand_loss = -np.mean(logits[np.arange(m), y.numpy()] - np.log(np.exp(logits).sum(axis=1)))
    assert abs(loss.item() - hand_loss) < TOL
    for lin, (dw, db) in zip(_linears(network), grads, strict=True):
        np.testing.assert_allclose(_np(lin.weight.grad), dw, rtol=0, atol=TOL)
        np.testing.assert_allclose(_np(lin.bias.grad), db, rtol=0, atol=TOL)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_backprop_mlp_mse_regression_matches_hand_chain_rule(act: str) -> None:
    info = DatasetInfo(name="toy", task="regression", num_samples=6, sample_shape=(4,), target_shape=(2,))
    network, _ = _build({"arch": "mlp", "hidden_sizes": [5, 4], "activation": act}, info)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    m, k = y.shape

    loss = _loss(network(x), y, "regression")
    loss.backward()

    weights = [(_np(lin.weight), _np(lin.bias)) for lin in _linears(network)]
    out, grads = _hand_backprop(weights, act, _np(x), lambda out: 2 * (out - _np(y).T) / (m * k))
    assert abs(loss.item() - np.mean((out - _np(y)) ** 2)) < TOL
    np.testing.assert_allclose(_np(network(x)), out, rtol=0, atol=TOL)  # the output layer is linear
    for lin, (dw, db) in zip(_linears(network), grads, strict=True):
        np.testing.assert_allclose(_np(lin.weight.grad), dw, rtol=0, atol=TOL)
        np.testing.assert_allclose(_np(lin.bias.grad), db, rtol=0, atol=TOL)


# --------------------------------------------------------------------------------------------- gradcheck

IMAGE = DatasetInfo(name="img", task="classification", num_samples=4, sample_shape=(1, 8, 8), num_classes=3)
SEQ = DatasetInfo(name="seq", task="classification", num_samples=4, sample_shape=(5, 2), num_classes=3)
SEQ_REG = DatasetInfo(
    name="seqreg", task="regression", num_samples=4, sample_shape=(5, 2), target_shape=(5, 1)
)
RING = BUILTIN_DATASETS["gaussian-ring"]

GRADCHECK_CASES = {
    "mlp-tanh": ({"arch": "mlp", "hidden_sizes": [5, 4], "activation": "tanh"}, BUILTIN_DATASETS["moons"]),
    "mlp-relu": ({"arch": "mlp", "hidden_sizes": [5, 4], "activation": "relu"}, BUILTIN_DATASETS["moons"]),
    "cnn": (
        {"arch": "cnn", "conv_blocks": [{"channels": 2}], "hidden_sizes": [4], "activation": "tanh"},
        IMAGE,
    ),
    "cnn-batchnorm-eval": (
        {
            "arch": "cnn",
            "conv_blocks": [{"channels": 2, "pool": "avg"}],
            "batch_norm": True,
            "hidden_sizes": [],
            "activation": "gelu",
        },
        IMAGE,
    ),
    **{
        f"rnn-{cell}{'-bi' if bi else ''}": (
            {"arch": "rnn", "cell": cell, "hidden_size": 3, "bidirectional": bi},
            SEQ,
        )
        for cell in ("rnn", "lstm", "gru")
        for bi in (False, True)
    },
    "rnn-gru-2layers-per-step": ({"arch": "rnn", "cell": "gru", "hidden_size": 3, "num_layers": 2}, SEQ_REG),
}


def _randomize_batch_norm(network: nn.Module) -> None:
    gen = torch.Generator().manual_seed(3)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen))
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
            module.weight.data.copy_(torch.randn(module.num_features, generator=gen))
            module.bias.data.copy_(torch.randn(module.num_features, generator=gen))


@pytest.mark.parametrize("case", list(GRADCHECK_CASES))
def test_gradcheck_supervised_architecture_wrt_input(case: str) -> None:
    model, info = GRADCHECK_CASES[case]
    network, spec = _build(model, info)
    _randomize_batch_norm(network)
    network.eval()
    problem = spec.problem(info)
    x = torch.randn(3, *problem.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(network, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


GAN_BODIES = {
    "mlp": ({"kind": "mlp", "hidden_sizes": [4, 3]}, RING),
    "conv": ({"kind": "conv", "channels": 2}, IMAGE),
}


@pytest.mark.parametrize("body", list(GAN_BODIES))
@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train"])
def test_gradcheck_gan_generator_and_discriminator(body: str, train_mode: bool) -> None:
    body_spec, info = GAN_BODIES[body]
    network, spec = _build(
        {"arch": "gan", "latent_dim": 3, "generator": body_spec, "discriminator": body_spec},
        info,
        dataset="gaussian-ring",
    )
    _randomize_batch_norm(network)
    network.train(train_mode)  # train mode: batch norm normalises with the batch's own statistics
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(3, spec.latent_dim, dtype=torch.float64, generator=gen, requires_grad=True)
    x = torch.randn(3, *network.sample_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    assert network(z).shape == (3, *network.sample_shape)
    assert torch.autograd.gradcheck(network, (z,), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(network.discriminator, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(
        lambda z_: network.discriminator(network(z_)), (z,), eps=1e-6, atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_gradcheck_mlp_wrt_parameters_via_functional_call(act: str) -> None:
    info = BUILTIN_DATASETS["moons"]
    network, _ = _build({"arch": "mlp", "hidden_sizes": [5, 4], "activation": act}, info)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    names = [name for name, _ in network.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in network.parameters())

    def loss_of(*values: torch.Tensor) -> torch.Tensor:
        return _loss(
            functional_call(network, dict(zip(names, values, strict=True)), (x,)), y, "classification"
        )

    assert torch.autograd.gradcheck(loss_of, params, eps=1e-6, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------ recurrent cells by hand


def _rnn_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray, f) -> np.ndarray:
    """h_t = f(W_h h_{t-1} + W_x x_t + b) from h_0 = 0; x (B, T, F) -> states (B, T, H)."""
    batch, steps, _ = x.shape
    h = np.zeros((batch, w_hh.shape[0]))
    states = []
    for t in range(steps):
        h = f(h @ w_hh.T + x[:, t] @ w_ih.T + b)
        states.append(h)
    return np.stack(states, axis=1)


def _weights(rnn: nn.RNNBase, layer: int, suffix: str = "") -> tuple[np.ndarray, ...]:
    get = lambda name: _np(getattr(rnn, f"{name}_l{layer}{suffix}"))  # noqa: E731
    return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_forward_vanilla_rnn_per_step_head_matches_hand_recurrence(nonlinearity: str) -> None:
    steps = 6
    info = DatasetInfo(
        name="seq", task="regression", num_samples=4, sample_shape=(steps, 2), target_shape=(steps, 1)
    )
    network, spec = _build(
        {"arch": "rnn", "cell": "rnn", "nonlinearity": nonlinearity, "hidden_size": 3}, info
    )
    assert spec.problem(info).per_step_output
    x = torch.randn(4, steps, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    f = np.tanh if nonlinearity == "tanh" else (lambda z: np.maximum(z, 0.0))
    w_ih, w_hh, b_ih, b_hh = _weights(network.recurrent, 0)
    states = _rnn_layer(_np(x), w_ih, w_hh, b_ih + b_hh, f)
    head = _linears(network)[-1]
    expected = states @ _np(head.weight).T + _np(head.bias)  # y_t = W_y h_t + c at every step
    out = network(x)
    assert out.shape == (4, steps, 1)
    np.testing.assert_allclose(_np(out), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize(("bidirectional", "num_layers"), [(False, 1), (True, 1), (True, 2), (False, 2)])
def test_forward_vanilla_rnn_last_state_head_matches_hand_recurrence(
    bidirectional: bool, num_layers: int
) -> None:
    network, _ = _build(
        {
            "arch": "rnn",
            "cell": "rnn",
            "hidden_size": 3,
            "bidirectional": bidirectional,
            "num_layers": num_layers,
        },
        SEQ,
    )
    x = _np(torch.randn(4, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8)))
    layer_in = x
    for layer in range(num_layers):
        w_ih, w_hh, b_ih, b_hh = _weights(network.recurrent, layer)
        forward = _rnn_layer(layer_in, w_ih, w_hh, b_ih + b_hh, np.tanh)
        if bidirectional:
            w_ih, w_hh, b_ih, b_hh = _weights(network.recurrent, layer, "_reverse")
            backward = _rnn_layer(layer_in[:, ::-1], w_ih, w_hh, b_ih + b_hh, np.tanh)[:, ::-1]
            layer_in = np.concatenate([forward, backward], axis=2)
            # the last forward state has read x_1..x_T, the backward one x_T..x_1 (it sits at t = 1)
            final = np.concatenate([forward[:, -1], backward[:, 0]], axis=1)
        else:
            layer_in, final = forward, forward[:, -1]
    head = _linears(network)[-1]
    expected = final @ _np(head.weight).T + _np(head.bias)
    np.testing.assert_allclose(_np(network(torch.from_numpy(x.copy()))), expected, rtol=0, atol=TOL)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_gated_cell_last_state_head_matches_hand_equations(cell: str) -> None:
    network, _ = _build({"arch": "rnn", "cell": cell, "hidden_size": 3}, SEQ)
    x = _np(torch.randn(4, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9)))
    w_ih, w_hh, b_ih, b_hh = _weights(network.recurrent, 0)
    h = np.zeros((4, 3))
    c = np.zeros((4, 3))
    for t in range(x.shape[1]):
        gx, gh = x[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if cell == "lstm":  # gates i, f, g, o; the head reads h_T, not the cell state c_T
            i, f, g, o = np.split(gx + gh, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # gates r, z, n
            xr, xz, xn = np.split(gx, 3, axis=1)
            hr, hz, hn = np.split(gh, 3, axis=1)
            r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
            n = np.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
    head = _linears(network)[-1]
    expected = h @ _np(head.weight).T + _np(head.bias)
    np.testing.assert_allclose(_np(network(torch.from_numpy(x))), expected, rtol=0, atol=TOL)
