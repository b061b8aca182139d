"""Run by test_cost.py in a fresh process: trains one epoch of a spec on synthetic data with the real `fit`
and prints, as JSON, the resident high-water mark it added and models.cost's memory estimate. Fresh, because
an earlier high-water mark would hide a smaller one; the data is made after the mark is reset, since the
estimate counts it."""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from models.cost import estimate
from models.dataset_info import DatasetInfo
from models.raw_dataset import RawDataset
from models.specs import JobSpec
from models.train import fit


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def main(case: dict) -> None:
    torch.set_num_threads(1)
    n, shape = case["n"], tuple(case["shape"])
    info = DatasetInfo(
        name="synthetic", task="classification", num_samples=n, sample_shape=shape, num_classes=2
    )
    training = {"epochs": 1, "batch_size": case["batch_size"], "checkpoint": {"every_seconds": 86400}}
    spec = JobSpec.model_validate(
        {"dataset": {"name": "digits"}, "model": case["model"], "training": training}
    )
    small = info.model_copy(update={"num_samples": 8})  # lazy imports and first-call caches are not the run's
    fit(spec, dataset=RawDataset(small, np.zeros((8, *shape), np.float32), np.arange(8) % 2))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _kib("VmRSS")
    x = np.random.default_rng(0).standard_normal((n, *shape), dtype=np.float32)
    fit(spec, dataset=RawDataset(info, x, np.arange(n) % 2))
    peak = (_kib("VmHWM") - before) * 1024
    print(json.dumps({"peak": peak, "estimated": estimate(spec, info).memory_bytes}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
