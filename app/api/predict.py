"""Predictions of a job's checkpoint: the request checked against the model (the dataset's sample shape, the
batch limit), run by ONNX Runtime (app/api/onnx_models.py), answered in the dataset's terms — class labels
as the dataset named them with the probability of each class, regression outputs in the target's shape, or
a GAN's samples in data units."""

import time
from collections import OrderedDict
from threading import Lock
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.api.checkpoints import find_checkpoint
from app.api.jobs import JobConflict, get_job
from app.api.onnx_models import ServedModel
from app.api.problems import NotFound
from app.db.job_state import verified_bytes
from app.db.tables import Checkpoint
from models.errors import SpecError

GAN_SAMPLES = 16  # what a GAN's predict generates when `n` is not given


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] | None = Field(
        default=None,
        description="raw samples in data units (the model normalises them), each of the dataset's sample "
        "shape or flat; not for a GAN",
    )
    n: int | None = Field(
        default=None, ge=1, description=f"a GAN's samples to generate (default {GAN_SAMPLES})"
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="a GAN's latent seed (default 0): the latents are numpy's "
        "default_rng(seed).standard_normal((n, latent_dim), dtype=float32)",
    )
    checkpoint: str = Field(default="best", max_length=20, description="best, latest or a checkpoint id")


class PredictPublic(BaseModel):
    """One of three answers, by the job's kind of network, each with the checkpoint that gave it."""

    checkpoint_id: int
    classes: list[int | str] | None = Field(default=None, description="classifier: the class of each input")
    probabilities: list[list[float]] | None = Field(
        default=None, description="classifier: each input's probability of every class, in `labels` order"
    )
    labels: list[int | str] | None = Field(default=None, description="classifier: the classes, in order")
    outputs: list[Any] | None = Field(default=None, description="regression: each input's output")
    samples: list[Any] | None = Field(default=None, description="GAN: generated samples in data units")


class RecentLookups:
    """Which checkpoint (id, sha256) an owner's `checkpoint` of a job named, kept for STATUS_CACHE_SECONDS:
    the warm predict then costs no database round trip, which was most of its latency (bench.predict). A
    new best checkpoint is seen within that time, as GET /v1/jobs/{id} sees progress."""

    def __init__(self, seconds: float, size: int = 10_000) -> None:
        self.seconds, self.size = seconds, size
        self.found: OrderedDict[tuple[str, str, str], tuple[float, int, str]] = OrderedDict()
        self.lock = Lock()

    def get(self, key: tuple[str, str, str]) -> tuple[int, str] | None:
        with self.lock:
            found = self.found.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1], found[2]

    def put(self, key: tuple[str, str, str], checkpoint_id: int, sha256: str) -> None:
        if self.seconds <= 0:
            return
        with self.lock:
            self.found[key] = (time.monotonic() + self.seconds, checkpoint_id, sha256)
            self.found.move_to_end(key)
            while len(self.found) > self.size:
                self.found.popitem(last=False)


def checkpoint_to_serve(*, session: Session, job_id: str, owner: str, which: str) -> Checkpoint:
    """The owner's job's checkpoint, its bytes left unread: 404 for another owner's job or an unknown id,
    409 while the job has none."""
    job = get_job(session=session, job_id=job_id, owner=owner)
    checkpoint = find_checkpoint(session=session, job=job, which=which, with_data=False)
    if checkpoint is not None:
        return checkpoint
    if which in ("best", "latest"):
        raise JobConflict(f"job {job_id} has no checkpoint yet: predict once its first one is written")
    raise NotFound("checkpoint", which)


def checkpoint_bytes(session_factory: sessionmaker[Session], checkpoint_id: int) -> bytes:
    """A checkpoint's verified bytes, in a session of its own: the export outlives the request that asked."""
    with session_factory() as session:
        row = session.scalars(select(Checkpoint).where(Checkpoint.id == checkpoint_id)).one()
        return verified_bytes(row)


def samples(body: PredictRequest) -> int:
    return len(body.inputs) if body.inputs is not None else body.n or GAN_SAMPLES


def check_request(body: PredictRequest, *, max_batch: int) -> None:
    """What can be refused before the model is loaded: the batch limit."""
    if body.inputs is not None and len(body.inputs) > max_batch:
        raise SpecError.single(
            "inputs", f"{len(body.inputs)} inputs", f"at most {max_batch} per request (MAX_PREDICT_BATCH)"
        )
    if body.n is not None and body.n > max_batch:
        raise SpecError.single("n", body.n, f"at most {max_batch} per request (MAX_PREDICT_BATCH)")


def predict(served: ServedModel, body: PredictRequest) -> dict[str, Any]:
    """The answer's fields by the model's kind (PredictPublic); SpecError (422) for inputs it cannot take."""
    if served.kind == "generator":
        return {"samples": _generate(served, body)}
    if body.n is not None or body.seed is not None:
        field = "n" if body.n is not None else "seed"
        raise SpecError.single(field, getattr(body, field), "only a GAN's job generates; send inputs")
    x = _batch(body.inputs, served.meta.info.sample_shape)
    out = _finite_outputs(served.run(x))
    info = served.meta.info
    if served.kind == "regression":
        shape = info.target_shape if np.prod(info.target_shape) == out[0].size else out.shape[1:]
        return {"outputs": out.reshape(len(x), *shape).tolist()}
    labels = list(info.classes) if info.classes else list(range(out.shape[1]))
    logits = out.astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return {
        "classes": [labels[i] for i in probabilities.argmax(axis=1)],
        "probabilities": probabilities.tolist(),
        "labels": labels,
    }


def _generate(served: ServedModel, body: PredictRequest) -> list[Any]:
    if body.inputs is not None:
        raise SpecError.single("inputs", "…", "a GAN's generator takes n and seed, not inputs")
    n, seed, latent_dim = body.n or GAN_SAMPLES, body.seed or 0, served.meta.latent_dim
    assert latent_dim is not None  # the exporter writes it for every generator
    latent = np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)
    return _finite_outputs(served.run(latent)).reshape(n, *served.meta.info.sample_shape).tolist()


def _batch(inputs: list[Any] | None, sample_shape: tuple[int, ...]) -> np.ndarray:
    """The inputs as one float32 array of (batch, *sample_shape); each may also come flat."""
    flat = int(np.prod(sample_shape))
    expected = f"a list of samples, each of shape {list(sample_shape)} (or {flat} numbers flat)"
    if not inputs:
        raise SpecError.single("inputs", inputs, f"required: {expected}")
    try:
        x = np.asarray(inputs)
    except ValueError:  # ragged nesting
        raise SpecError.single("inputs", "ragged lists", f"must be {expected}") from None
    if x.dtype.kind not in "iuf":
        raise SpecError.single("inputs", f"values of type {x.dtype.name}", f"must be numbers: {expected}")
    if x.shape[1:] == (flat,) and x.shape[1:] != sample_shape:
        x = x.reshape(len(x), *sample_shape)
    if x.shape[1:] != sample_shape:
        raise SpecError.single("inputs", f"samples of shape {list(x.shape[1:])}", f"must be {expected}")
    with np.errstate(over="ignore"):  # beyond float32 becomes infinite, refused below
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise SpecError.single("inputs", "not finite", "must be finite numbers within float32 (|x| < 3.4e38)")
    return x


def _finite_outputs(out: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1))
    if len(bad):
        raise SpecError.single(
            "inputs",
            f"inputs {bad[:10].tolist()}",
            "the network's output is not finite for these: values "
            "this far from the training data overflow it",
        )
    return out
