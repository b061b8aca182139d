"""Each epoch of a generative run reports samples in raw data units; a supervised run reports none."""

import numpy as np
import pytest
import torch

from models.checkpoint import load_model
from models.samples import COUNTS, REFERENCE_COUNTS
from models.specs import parse_job_spec
from models.train import EpochReport, Hook, fit

GANS = {
    "ring": {
        "dataset": {"name": "gaussian-ring"},
        "model": {
            "arch": "gan",
            "generator": {"hidden_sizes": [16]},
            "discriminator": {"hidden_sizes": [16]},
        },
        "training": {"epochs": 2, "batch_size": 256, "seed": 5},
    },
    "digits-conv": {
        "dataset": {"name": "digits"},
        "model": {
            "arch": "gan",
            "latent_dim": 8,
            "generator": {"kind": "conv", "channels": 4},
            "discriminator": {"kind": "conv", "channels": 4},
        },
        "training": {"epochs": 2, "batch_size": 256, "seed": 2},
    },
}


class Epochs(Hook):
    def __init__(self) -> None:
        self.reports: list[EpochReport] = []

    def on_epoch(self, report: EpochReport) -> None:
        self.reports.append(report)


def _fit(spec: dict) -> tuple[list[EpochReport], dict]:
    hook = Epochs()
    result = fit(parse_job_spec(spec), hook=hook)
    return hook.reports, result.checkpoint


@pytest.mark.parametrize("name", sorted(GANS))
def test_gan_fit_reports_each_epochs_samples_in_raw_units(name: str) -> None:
    spec = GANS[name]
    reports, checkpoint = _fit(spec)
    assert [r.epoch for r in reports] == [1, 2]
    kind, shape = ("points", (2,)) if name == "ring" else ("images", (8, 8))
    for report in reports:
        assert report.samples is not None
        assert (report.samples.kind, report.samples.shape) == (kind, shape)
        assert np.asarray(report.samples.samples).shape == (COUNTS[kind], *shape)
        assert np.asarray(report.samples.reference).shape == (REFERENCE_COUNTS[kind], *shape)
    assert reports[0].samples != reports[1].samples  # refreshed: the generator moved

    # Raw units: the final epoch's samples are what the downloadable generator (normalisation inside)
    # makes of the evaluation generator's latent vectors.
    z = torch.randn(
        COUNTS[kind],
        spec["model"].get("latent_dim", 16),
        generator=torch.Generator().manual_seed(spec["training"]["seed"] + 1),
    )
    with torch.no_grad():
        expected = load_model(checkpoint)(z).reshape(len(z), *shape).numpy()
    np.testing.assert_allclose(np.asarray(reports[-1].samples.samples), expected, rtol=1e-5, atol=1e-5)


def test_gan_fit_reference_points_are_real_data_in_raw_units() -> None:
    reports, _ = _fit(GANS["ring"])
    assert reports[0].samples is not None
    reference = np.asarray(reports[0].samples.reference)
    radii = np.linalg.norm(reference, axis=1)  # the ring's modes sit at radius 2 with σ 0.05
    assert abs(radii.mean() - 2.0) < 0.05
    assert radii.std() < 0.1


def test_digits_gan_reference_images_keep_the_pixel_scale() -> None:
    reports, _ = _fit(GANS["digits-conv"])
    assert reports[0].samples is not None
    reference = np.asarray(reports[0].samples.reference)
    assert reference.min() > -1e-3 and reference.max() == pytest.approx(16.0)  # digits' pixels are 0..16


def test_supervised_fit_reports_no_samples() -> None:
    spec = {
        "dataset": {"name": "moons"},
        "model": {"arch": "mlp", "hidden_sizes": [8]},
        "training": {"epochs": 2},
    }
    reports, _ = _fit(spec)
    assert len(reports) == 2
    assert all(r.samples is None for r in reports)
