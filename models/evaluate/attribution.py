"""Which inputs a decision rests on: saliency (|∂output/∂x|, Simonyan et al. 2014) and integrated gradients
(Sundararajan et al. 2017) from the training mean, by Captum, for the first N samples of a split.

The attributed output is the predicted class's logit for a classifier and the last output value for a
regressor (an RNN's prediction for its last step). Integrated gradients are complete: their sum equals
output(x) − output(baseline) up to the path integral's error, which Captum returns as the convergence
delta."""

from typing import Any

import torch
from captum.attr import IntegratedGradients, Saliency
from torch import Tensor, nn

from models.evaluate.params import AttributionParams
from models.evaluate.report import predict
from models.evaluate.subject import Subject, rounded
from models.samples import sample_kind

IG_INTERNAL_BATCH = 2_048  # samples × steps evaluated per forward pass, bounding the memory IG takes
DELTA_TOLERANCE = 0.05


class _LastOutput(nn.Module):
    """A regressor's last output value as a (B, 1) output Captum can attribute (target 0)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x).flatten(1)[:, -1:]


def attribution(subject: Subject, params: AttributionParams) -> dict[str, Any]:
    x = subject.x[: params.samples]
    classifier = subject.info.task == "classification"
    forward = subject.module if classifier else _LastOutput(subject.module)
    output = predict(forward, x)
    target = output.argmax(1) if classifier else torch.zeros(len(x), dtype=torch.long)
    baseline = subject.data.x["train"].mean(0, keepdim=True).expand_as(x)  # (N, *input_shape)
    saliency = Saliency(forward).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    integrated, delta = IntegratedGradients(forward).attribute(
        x,
        baselines=baseline,
        target=target,
        n_steps=params.ig_steps,
        internal_batch_size=IG_INTERNAL_BATCH,
        return_convergence_delta=True,
    )
    shape = subject.info.sample_shape
    classes = list(subject.info.classes or range(subject.info.num_classes or 0)) if classifier else []
    y = subject.y
    items = []
    for i in range(len(x)):
        item: dict[str, Any] = {
            "input": rounded(subject.raw(x[i : i + 1])[0].tolist()),
            "saliency": rounded(saliency[i].reshape(shape).tolist()),
            "integrated_gradients": rounded(integrated[i].detach().reshape(shape).tolist()),
            "delta": float(delta[i]),
        }
        if classifier and y is not None:
            item |= {"label": classes[int(y[i])], "predicted": classes[int(target[i])]}
        items.append(item)
    within = (delta.abs() < DELTA_TOLERANCE).double().mean()
    return {
        "samples": len(x),
        "shape": list(shape),
        # how the page draws a map: a heat map per image, bars per feature, time × feature (an RNN's view)
        "layout": "sequence" if len(subject.network.problem.input_shape) == 2 else sample_kind(shape),
        "target": "predicted class logit" if classifier else "last output value",
        "baseline": "training mean",
        "ig_steps": params.ig_steps,
        "max_abs_delta": float(delta.abs().max()),
        "fraction_delta_below_tolerance": float(within),
        "delta_tolerance": DELTA_TOLERANCE,
        "items": items,
    }
