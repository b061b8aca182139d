"""`training.compile: true` trains the same network through torch.compile: the same curve (to float
tolerance: compiled kernels may fuse and reorder), the same checkpoint keys."""

import pytest
from support import TINY_GAN
from torch._dynamo.utils import counters

from models.specs import parse_job_spec
from models.train import Hook, StepReport, fit

CASES = {
    "mlp": {"dataset": {"name": "moons"}, "model": {"arch": "mlp", "hidden_sizes": [16]}},
    "gan": TINY_GAN,
}


class StepLosses(Hook):
    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []

    def on_step(self, report: StepReport) -> None:
        self.losses.append(report.metrics)


@pytest.mark.parametrize("arch", list(CASES))
def test_compiled_training_follows_the_eager_curve(arch: str) -> None:
    results = {}
    for compiled in (False, True):
        spec = parse_job_spec(
            CASES[arch] | {"training": {"epochs": 2, "batch_size": 64, "compile": compiled, "device": "cpu"}}
        )
        hook = StepLosses()
        counters.clear()
        result = fit(spec, hook=hook)
        assert bool(counters["stats"]["unique_graphs"]) is compiled  # dynamo captured graphs only if asked
        results[compiled] = (hook.losses, result)
    (eager, eager_run), (compiled, compiled_run) = results[False], results[True]
    assert len(eager) == len(compiled) > 10
    for before, after in zip(eager, compiled, strict=True):
        assert after == pytest.approx(before, rel=1e-3, abs=1e-4)
    assert list(compiled_run.checkpoint["model"]) == list(eager_run.checkpoint["model"])
