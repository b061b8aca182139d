"""Starting a job from another job's checkpoint (`init_from`): a new run, unlike a resume, that takes the
parent's weights (all, or the body without its output layers), optionally freezes the body, keeps or refits
the normalisation, and, to train longer, keeps the optimizer state and random streams.

The output layers are the last layer with parameters of each of the architecture's output networks (the
registry's `output_networks`): the whole network's for a classifier or a regressor (MLP, CNN, RNN), a GAN's
generator's and discriminator's. A new label set changes only those, so `load: body` lets the number of
classes change.
"""

from typing import Any

import torch
from torch import Tensor, nn

from models.assemble import Run, build_network
from models.checkpoint import restore_rng
from models.data import fit_normalization
from models.dataset_info import DatasetInfo
from models.errors import SpecError, SpecIssue
from models.registry import get_architecture
from models.specs import InitFromSpec, JobSpec


def output_layers(model: nn.Module, arch: str) -> list[str]:
    """The module names of the network's output layers (`layers.4`, `head`, `generator.0.4`, …)."""
    names = []
    for root in get_architecture(arch).output_networks:
        network = model.get_submodule(root)
        last = [name for name, m in network.named_modules() if any(True for _ in m.parameters(recurse=False))]
        names.append(".".join(part for part in (root, last[-1]) if part))
    return names


def head_keys(model: nn.Module, arch: str) -> set[str]:
    """The state-dict keys of the output layers (their weights, biases and any buffers)."""
    prefixes = tuple(f"{name}." for name in output_layers(model, arch))
    return {key for key in model.state_dict() if key.startswith(prefixes)}


def _shapes(spec: JobSpec, info: DatasetInfo) -> tuple[nn.Module, dict[str, tuple[int, ...]]]:
    """The spec's network built on the meta device (no memory, no RNG drawn) and its state's shapes."""
    with torch.device("meta"):
        module = build_network(spec, info).module
    return module, {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _shape(shape: tuple[int, ...] | None) -> str:
    return "absent" if shape is None else f"({', '.join(map(str, shape))})"


def mismatches(spec: JobSpec, info: DatasetInfo, parent: dict[str, Any], load: str) -> list[SpecIssue]:
    """Each layer whose weights cannot load from the parent's checkpoint, with both shapes."""
    parent_spec = JobSpec.model_validate(parent["spec"])
    if parent_spec.model.arch != spec.model.arch:
        reason = f"the parent job trained a {parent_spec.model.arch} network; init_from needs the same arch"
        return [SpecIssue("model.arch", spec.model.arch, reason)]
    child, ours = _shapes(spec, info)
    theirs = {key: tuple(value.shape) for key, value in parent["model"].items()}
    skipped: set[str] = set()
    if load == "body":
        parent_module, _ = _shapes(parent_spec, DatasetInfo.model_validate(parent["dataset_info"]))
        skipped = head_keys(child, spec.model.arch) | head_keys(parent_module, spec.model.arch)
    issues = []
    for key in sorted((ours.keys() | theirs.keys()) - skipped):
        if ours.get(key) != theirs.get(key):
            reason = (
                f"{_shape(theirs.get(key))} in the parent's checkpoint, {_shape(ours.get(key))} in this "
                "network" + (" (load: body gives the output layers new weights)" if load == "all" else "")
            )
            issues.append(SpecIssue("init_from", key, reason))
    return issues


def check_compatible(spec: JobSpec, info: DatasetInfo, parent: dict[str, Any]) -> None:
    """Raise SpecError naming everything that keeps `spec` from starting from the `parent` checkpoint."""
    init = spec.init_from
    assert init is not None
    issues = mismatches(spec, info, parent, init.load)
    if not issues and not init.refit_normalisation:
        wanted = fit_normalization(torch.zeros(2, *spec.model.problem(info).input_shape))[0].shape
        got = tuple(parent["normalization"]["mean"].shape)
        if tuple(wanted) != got:
            reason = (
                f"the parent normalised inputs of shape {_shape(got)}, this network takes "
                f"{_shape(tuple(wanted))}: set refit_normalisation: true"
            )
            issues.append(SpecIssue("init_from.refit_normalisation", False, reason))
    if init.optimizer_state == "keep":
        issues += _keep_issues(spec, parent)
    if issues:
        raise SpecError(issues)


def _keep_issues(spec: JobSpec, parent: dict[str, Any]) -> list[SpecIssue]:
    if not parent.get("resumable", True) or not parent.get("optimizers"):
        reason = "this checkpoint holds weights alone (a best epoch's): keep needs checkpoint: latest"
        return [SpecIssue("init_from.optimizer_state", "keep", reason)]
    parent_spec = JobSpec.model_validate(parent["spec"])
    issues = []
    if parent_spec.optimizer.model_dump() != spec.optimizer.model_dump():
        reason = f"keep continues the parent's optimizer, which was {parent_spec.optimizer.model_dump()}"
        issues.append(SpecIssue("optimizer", spec.optimizer.model_dump(), reason))
    ours = spec.model.model_dump(include={"discriminator_optimizer"})
    theirs = parent_spec.model.model_dump(include={"discriminator_optimizer"})
    if ours != theirs:
        reason = f"keep continues the parent's optimizers, which were {theirs}"
        issues.append(SpecIssue("model.discriminator_optimizer", ours, reason))
    return issues


def start_from(run: Run, parent: dict[str, Any], init: InitFromSpec) -> None:
    """Load the parent's weights into the assembled run (after `check_compatible`), then its normalisation
    unless refitted, and with `optimizer_state: keep` its optimizer, schedule, scaler and random streams."""
    check_compatible(run.spec, run.data.info, parent)
    model, arch = run.model, run.spec.model.arch
    state = parent["model"]
    if init.load == "body":
        heads = head_keys(model, arch)
        state = {key: value for key, value in state.items() if key not in heads}
    model.load_state_dict(state, strict=init.load == "all")
    if not init.refit_normalisation:
        _renormalise(run, parent["normalization"]["mean"], parent["normalization"]["std"])
    if init.optimizer_state == "keep":
        for name, optimizer in run.optimizers.items():
            optimizer.load_state_dict(parent["optimizers"][name])
        for name, scheduler in run.schedulers.items():
            scheduler.load_state_dict(parent["schedulers"][name])
        if run.scaler is not None and parent["scaler"]:
            run.scaler.load_state_dict(parent["scaler"])
        restore_rng(parent["rng"], run.shuffle)


def _renormalise(run: Run, mean: Tensor, std: Tensor) -> None:
    """Normalise the run's data with the parent's statistics: the body expects its inputs scaled so."""
    data = run.data
    mean, std = mean.to(run.device), std.to(run.device)
    if torch.equal(mean, data.mean) and torch.equal(std, data.std):
        return  # the same data and split: nothing to redo (and nothing rounded)
    for split, x in data.x.items():
        data.x[split] = (data.denormalize(x) - mean) / std
    data.mean, data.std = mean, std


def body_frozen(init: InitFromSpec | None, completed_epochs: int) -> bool:
    """Whether the body is frozen for the epoch after `completed_epochs` (also right for a resumed run)."""
    if init is None or init.freeze == "none":
        return False
    return init.unfreeze_after_epochs is None or completed_epochs < init.unfreeze_after_epochs


def set_body_frozen(model: nn.Module, arch: str, frozen: bool) -> None:
    """Freeze (or thaw) every parameter outside the output layers. A frozen parameter gets no gradient, so
    the optimizers leave it as it is (weight decay included); batch-norm running statistics, which are not
    parameters, still follow the new data, as in torchvision's fine-tuning tutorial."""
    heads = tuple(f"{name}." for name in output_layers(model, arch))
    for name, parameter in model.named_parameters():
        if not name.startswith(heads):
            parameter.requires_grad_(not frozen)
