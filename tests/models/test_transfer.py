"""Starting a job from another job's checkpoint (models.transfer): every architecture loads its parent, a new
head for a new label set, a frozen body, the normalisation kept or refitted, and "train longer" continuing
the parent bit for bit."""

from typing import Any

import pytest
import torch

from models.assemble import assemble
from models.datasets import builtin_dataset
from models.errors import SpecError
from models.raw_dataset import RawDataset
from models.specs import JobSpec, parse_job_spec
from models.train import fit
from models.transfer import head_keys, output_layers, start_from

TINY: dict[str, dict[str, Any]] = {
    "mlp": {"dataset": {"name": "digits"}, "model": {"arch": "mlp", "hidden_sizes": [16, 8]}},
    "cnn": {
        "dataset": {"name": "digits"},
        "model": {"arch": "cnn", "conv_blocks": [{"channels": 4}], "batch_norm": True, "hidden_sizes": [8]},
    },
    "rnn": {"dataset": {"name": "digits"}, "model": {"arch": "rnn", "cell": "gru", "hidden_size": 8}},
    "gan": {
        "dataset": {"name": "gaussian-ring"},
        "model": {"arch": "gan", "generator": {"hidden_sizes": [8]}, "discriminator": {"hidden_sizes": [8]}},
    },
}
HEADS = {
    "mlp": ["layers.4"],
    "cnn": ["classifier.2"],
    "rnn": ["head"],
    "gan": ["generator.0.2", "discriminator.1.2"],
}


def _spec(arch: str, epochs: int = 1, **extra: Any) -> JobSpec:
    training = {"epochs": epochs, "batch_size": 128, "seed": 1} | extra.pop("training", {})
    return parse_job_spec(TINY[arch] | {"training": training} | extra)


def _parity_digits() -> RawDataset:
    """digits relabelled as odd or even: the same inputs, a new label set of two classes."""
    digits = builtin_dataset("digits")
    info = digits.info.model_copy(update={"name": "digits-parity", "num_classes": 2})
    assert digits.y is not None
    return RawDataset(info, digits.x, digits.y % 2)


@pytest.fixture(scope="module")
def parents() -> dict[str, dict[str, Any]]:
    return {arch: fit(_spec(arch)).checkpoint for arch in TINY}


@pytest.mark.parametrize("arch", list(TINY))
def test_output_layers_are_each_networks_last_layer(arch: str) -> None:
    run = assemble(_spec(arch), builtin_dataset(TINY[arch]["dataset"]["name"]))
    assert output_layers(run.model, arch) == HEADS[arch]


@pytest.mark.parametrize("arch", list(TINY))
def test_fine_tune_starts_from_the_parent_for_every_arch(arch: str, parents: dict[str, Any]) -> None:
    parent = parents[arch]
    child = _spec(arch, init_from={"job": "abcd", "checkpoint": "latest"})
    run = assemble(child, builtin_dataset(TINY[arch]["dataset"]["name"]))
    assert child.init_from is not None
    start_from(run, parent, child.init_from)
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, parent["model"][key]), key
    result = fit(child, parent=parent)  # and it trains on from there
    assert result.progress.epoch == 1
    assert all(torch.isfinite(v).all() for v in result.model.state_dict().values() if v.is_floating_point())


def test_load_body_gives_a_new_head_for_a_new_label_set(parents: dict[str, Any]) -> None:
    parent = parents["mlp"]
    child = _spec("mlp", init_from={"job": "abcd", "load": "body"})
    run = assemble(child, _parity_digits())
    assert child.init_from is not None
    start_from(run, parent, child.init_from)
    state = run.model.state_dict()
    assert state["layers.4.weight"].shape == (2, 8)  # the new head, two classes
    for key in ("layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"):
        assert torch.equal(state[key], parent["model"][key])


def test_load_all_with_another_hidden_size_names_each_layer_and_both_shapes(parents: dict[str, Any]) -> None:
    child = parse_job_spec(
        {**TINY["mlp"], "model": {"arch": "mlp", "hidden_sizes": [32, 8]}, "init_from": {"job": "abcd"}}
    )
    with pytest.raises(SpecError) as raised:
        fit(child, parent=parents["mlp"])
    found = {issue.value: issue.reason for issue in raised.value.issues}
    assert set(found) == {"layers.0.weight", "layers.0.bias", "layers.2.weight"}
    assert found["layers.0.weight"].startswith("(16, 64) in the parent's checkpoint, (32, 64) in this")
    assert found["layers.0.bias"].startswith("(16) in the parent's checkpoint, (32) in this network")


def test_load_all_with_a_new_label_set_is_refused_naming_the_head(parents: dict[str, Any]) -> None:
    child = _spec("mlp", init_from={"job": "abcd"})
    with pytest.raises(SpecError) as raised:
        fit(child, dataset=_parity_digits(), parent=parents["mlp"])
    assert {issue.value for issue in raised.value.issues} == {"layers.4.weight", "layers.4.bias"}
    assert "load: body" in raised.value.issues[0].reason


def test_another_arch_is_refused(parents: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="the parent job trained a cnn network"):
        fit(_spec("mlp", init_from={"job": "abcd"}), parent=parents["cnn"])


@pytest.mark.parametrize("arch", ["cnn", "gan"])
def test_freeze_body_trains_only_the_output_layers(arch: str, parents: dict[str, Any]) -> None:
    parent = parents[arch]
    child = _spec(arch, 2, init_from={"job": "abcd", "load": "body", "freeze": "body"})
    state = fit(child, parent=parent).model.state_dict()
    model = assemble(_spec(arch), builtin_dataset(TINY[arch]["dataset"]["name"])).model
    heads, parameters = head_keys(model, arch), {name for name, _ in model.named_parameters()}
    for key in parameters - heads:
        assert torch.equal(state[key], parent["model"][key]), f"{key} of the frozen body moved"
    for key in parameters & heads:
        assert not torch.equal(state[key], parent["model"][key]), f"{key} of the head did not train"


def test_unfreeze_after_epochs_trains_the_body_from_then_on(parents: dict[str, Any]) -> None:
    parent = parents["mlp"]
    frozen = {"job": "abcd", "freeze": "body", "unfreeze_after_epochs": 1}
    state = fit(_spec("mlp", 2, init_from=frozen), parent=parent).model.state_dict()
    assert not torch.equal(state["layers.0.weight"], parent["model"]["layers.0.weight"])


def test_normalisation_is_the_parents_unless_refitted(parents: dict[str, Any]) -> None:
    parent = parents["mlp"]
    brighter = builtin_dataset("digits")
    brighter = RawDataset(brighter.info, brighter.x * 2 + 1, brighter.y)
    kept = fit(_spec("mlp", init_from={"job": "abcd"}), dataset=brighter, parent=parent).checkpoint
    assert torch.equal(kept["normalization"]["mean"], parent["normalization"]["mean"])
    refit = {"job": "abcd", "refit_normalisation": True}
    refitted = fit(_spec("mlp", init_from=refit), dataset=brighter, parent=parent).checkpoint
    assert torch.allclose(refitted["normalization"]["mean"], parent["normalization"]["mean"] * 2 + 1)


def test_train_longer_continues_the_parent_bit_for_bit() -> None:
    """1 epoch, then 2 more with the parent's optimizer state, equal one uninterrupted run of 3."""
    common = {
        "dataset": {"name": "digits"},
        "model": {"arch": "mlp", "hidden_sizes": [16], "dropout": 0.3},  # dropout draws from the RNG
        "optimizer": {"name": "momentum", "lr": 0.05},
    }

    def spec(epochs: int, **extra: Any) -> JobSpec:
        return parse_job_spec(common | {"training": {"epochs": epochs, "batch_size": 64, "seed": 4}} | extra)

    parent = fit(spec(1)).checkpoint
    keep = {"job": "abcd", "checkpoint": "latest", "optimizer_state": "keep"}
    longer = fit(spec(2, init_from=keep), parent=parent)
    whole = fit(spec(3))
    for key, value in whole.model.state_dict().items():
        assert torch.equal(longer.model.state_dict()[key], value), key
    reset = fit(spec(2, init_from=keep | {"optimizer_state": "reset"}), parent=parent).model.state_dict()
    assert not torch.equal(reset["layers.0.weight"], whole.model.state_dict()["layers.0.weight"])


def test_keep_refuses_a_weights_only_checkpoint_and_another_optimizer(parents: dict[str, Any]) -> None:
    best_only = {**parents["mlp"], "resumable": False, "optimizers": {}}
    keep = {"job": "abcd", "optimizer_state": "keep"}
    with pytest.raises(SpecError, match="keep needs checkpoint: latest"):
        fit(_spec("mlp", init_from=keep), parent=best_only)
    with pytest.raises(SpecError) as raised:
        fit(_spec("mlp", init_from=keep, optimizer={"name": "sgd"}), parent=parents["mlp"])
    assert raised.value.issues[0].field == "optimizer"


def test_init_from_without_its_parent_checkpoint_is_refused() -> None:
    with pytest.raises(SpecError, match="the parent job's checkpoint is missing"):
        fit(_spec("mlp", init_from={"job": "abcd"}))


@pytest.mark.parametrize(
    ("init_from", "field"),
    [
        ({"job": "ab"}, "init_from.job"),
        ({"job": "abcd", "unfreeze_after_epochs": 2}, "init_from"),
        ({"job": "abcd", "load": "body", "optimizer_state": "keep"}, "init_from"),
        ({"job": "abcd", "checkpoint": "newest"}, "init_from.checkpoint"),
    ],
)
def test_inconsistent_init_from_names_the_field(init_from: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_job_spec(TINY["mlp"] | {"init_from": init_from})
    assert raised.value.issues[0].field.startswith(field)
