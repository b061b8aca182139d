"""A run is assembled in one place, and each architecture is declared once: its spec in the `ModelSpec` union
(with its templates) and its module in models/archs/, which registers it; every list follows from those."""

import ast
from pathlib import Path

import torch

from models import specs
from models.assemble import assemble, build_network
from models.datasets import builtin_dataset
from models.registry import get_architecture, list_architectures
from models.specs import arch_specs, parse_job_spec, union_members
from models.templates import TEMPLATES

ROOT = Path(__file__).resolve().parents[2]


def test_registry_holds_exactly_the_architectures_of_the_spec_union() -> None:
    assert list_architectures() == sorted(arch_specs())


def test_templates_are_each_architectures_own_and_parse() -> None:
    for arch, spec in arch_specs().items():
        assert spec.templates, f"{arch} has no starter template"
        for name, template in spec.templates.items():
            assert TEMPLATES[name] is template
            assert parse_job_spec(template).model.arch == arch
    assert len(TEMPLATES) == sum(len(spec.templates) for spec in arch_specs().values())


def _tags(union: object, field: str) -> set[str]:
    return {member.model_fields[field].default for member in union_members(union)}


def test_union_tags_are_the_tags_of_every_union() -> None:
    expected = (
        _tags(specs.ModelSpec, "arch")
        | _tags(specs.GANBodySpec, "kind")
        | _tags(specs.OptimizerSpec, "name")
        | _tags(specs.ScheduleSpec, "kind")
    )
    assert expected == specs._UNION_TAGS


def test_no_isinstance_on_an_architecture_outside_its_own_module() -> None:
    home = {get_architecture(arch).build.__name__: arch for arch in list_architectures()}
    home |= {spec.__name__: arch for arch, spec in arch_specs().items()}
    home |= {body.__name__: "gan" for body in union_members(specs.GANBodySpec)}
    found = []
    for folder in ("models", "bench", "app", "workers", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                    names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                    for name in names & set(home):
                        if path != ROOT / "models" / "archs" / f"{home[name]}.py":
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []


def test_assemble_twice_gives_the_same_network_split_and_order() -> None:
    spec = parse_job_spec({"dataset": {"name": "digits"}, "model": {"arch": "mlp", "hidden_sizes": [8]}})
    raw = builtin_dataset("digits")
    first, second = assemble(spec, raw), assemble(spec, raw)
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first.data.x["val"], second.data.x["val"])
    orders = [torch.randperm(10, generator=run.shuffle) for run in (first, second)]
    assert torch.equal(*orders)


def test_build_network_matches_the_spec_and_dataset() -> None:
    spec = parse_job_spec({"dataset": {"name": "gaussian-ring"}, "model": {"arch": "gan"}})
    network = build_network(spec, builtin_dataset("gaussian-ring").info)
    assert network.architecture.generative and network.problem.input_shape == (2,)
    assert sum(p.numel() for p in network.module.parameters()) == spec.model.num_parameters(
        builtin_dataset("gaussian-ring").info
    )
