"""`fit()`: the one training function behind the worker, the CLI, the tests and the benchmarks.

Callers observe and steer a run through one `Hook`: step and epoch metrics, checkpoints, and a stop request
checked after every step. The run itself (data, network, procedure, optimizers) comes from `models.assemble`;
the loop never branches on the architecture: the procedure (supervised or adversarial) takes each step.
"""

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from models.assemble import Run, assemble
from models.checkpoint import Progress, make_checkpoint, restore_rng, rng_state
from models.datasets import load_raw
from models.errors import Diverged, SpecError
from models.objective import default_objective, early_stopping_target
from models.procedures import EvalContext, StepOutputs, step_metrics
from models.raw_dataset import RawDataset
from models.registry import get_architecture
from models.samples import COUNTS, REFERENCE_COUNTS, SampleSet, sample_kind, sample_set
from models.specs import JobSpec, check_against_dataset
from models.transfer import body_frozen, set_body_frozen, start_from

FLUSH_STEPS = 32  # step metrics reach the hook in groups, so the loop synchronises once per group
FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class StepReport:
    epoch: int  # the epoch this step belongs to, from 1
    step: int  # optimizer steps so far, from 1
    metrics: dict[str, float]


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    step: int
    total_epochs: int
    steps_per_epoch: int
    metrics: dict[str, float]  # train_*, val_* and, when the run ends, test_*
    is_best: bool  # the objective improved this epoch
    best_test_metrics: dict[str, float]  # test_* of the best epoch's weights so far (models.objective)
    final: bool  # the last epoch of the run (completed or stopped early)
    seconds: float
    samples_per_second: float
    samples: SampleSet | None = None  # a generative network's samples of this epoch (models.samples)


class Hook:
    """Override what you need; `fit()` calls these on the training thread."""

    def on_step(self, report: StepReport) -> None:
        pass

    def on_epoch(self, report: EpochReport) -> None:
        pass

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        """`report` is None for a checkpoint taken mid-epoch and for the best epoch's weights written
        later (`checkpoint["resumable"]` False); `checkpoint["progress"]` says where it stands."""

    def should_stop(self) -> bool:
        return False


@dataclass
class FitResult:
    model: nn.Module
    metrics: dict[str, float]
    progress: Progress
    status: Literal["completed", "early_stopped", "stopped"]
    checkpoint: dict[str, Any]


def fit(
    spec: JobSpec,
    *,
    hook: Hook | None = None,
    dataset: RawDataset | None = None,
    resume: dict[str, Any] | None = None,
    parent: dict[str, Any] | None = None,
) -> FitResult:
    """Train `spec` to the end (or until early stopping or `hook.should_stop()`), optionally continuing
    from a checkpoint. `dataset` overrides `spec.dataset` (the service passes uploaded data this way).
    `parent` is the checkpoint `spec.init_from` names, which a new run starts from (models.transfer)."""
    raw = dataset if dataset is not None else load_raw(spec.dataset)
    check_against_dataset(spec, raw.info)
    loop = _Loop(assemble(spec, raw))
    if resume is not None:
        loop.restore(resume)
    elif spec.init_from is not None:
        if parent is None:
            raise SpecError.single("init_from", spec.init_from.job, "the parent job's checkpoint is missing")
        start_from(loop.run, parent, spec.init_from)
    return loop.train(hook or Hook())


class _Loop:
    """The training loop over an assembled run: its progress, the objective, hooks, checkpoints."""

    def __init__(self, run: Run) -> None:
        self.run, self.spec, self.data, self.procedure = run, run.spec, run.data, run.procedure
        self.progress = Progress()
        self.metrics: dict[str, float] = {}  # the latest epoch's
        self.epoch_start_shuffle = run.shuffle.get_state()
        # The best epoch's weights, kept until the next checkpoint write stores them (models.checkpoint).
        self.best: _BestEpoch | None = None
        self.saved_best_epoch: int | None = None
        self.saved_at = time.monotonic()
        self.objective = self.spec.training.objective or default_objective(
            self.data.info.task,
            generative=get_architecture(self.spec.model.arch).generative,
            has_validation=self.data.size("val") > 0,
            has_quality=self.data.quality is not None,
        )
        self.stop_target = early_stopping_target(self.spec, self.objective)
        # Each optimizer's learning rate is a step metric: `lr`, or `lr_<group>` for several (a GAN's two).
        optimizers = run.optimizers
        self.lr_names = {group: "lr" if len(optimizers) == 1 else f"lr_{group}" for group in optimizers}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        saved = JobSpec.model_validate(checkpoint["spec"])
        if saved.model_dump() != self.spec.model_dump():
            raise SpecError.single("resume", "checkpoint", "the checkpoint was written for a different spec")
        self.run.model.load_state_dict(checkpoint["model"])
        for name, optimizer in self.run.optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][name])
        for name, scheduler in self.run.schedulers.items():
            scheduler.load_state_dict(checkpoint["schedulers"][name])
        if self.run.scaler is not None and checkpoint["scaler"]:
            self.run.scaler.load_state_dict(checkpoint["scaler"])
        if not checkpoint.get("resumable", True):
            raise SpecError.single("resume", "checkpoint", "a best-epoch checkpoint holds no optimizer state")
        self.progress = Progress(**checkpoint["progress"])
        self.metrics = dict(checkpoint["metrics"])
        self.saved_best_epoch = self.progress.best_epoch  # every write stores the best first
        restore_rng(checkpoint["rng"], self.run.shuffle)

    def train(self, hook: Hook) -> FitResult:
        training = self.spec.training
        status: Literal["completed", "early_stopped", "stopped"] = "completed"
        checkpoint: dict[str, Any] | None = None
        while self.progress.epoch < training.epochs:
            started = time.perf_counter()
            samples = self.progress.epoch_samples
            if not self._train_epoch(hook):
                checkpoint = self._save(hook, None) or self._checkpoint()
                return FitResult(self.run.model, self.metrics, self.progress, "stopped", checkpoint)
            metrics = self.metrics = self._end_epoch()
            is_best = self._update_best(metrics)
            early_stop = self._update_early_stopping(metrics)
            final = early_stop or self.progress.epoch == training.epochs
            if final and self.progress.nonfinite_steps:  # it ended before max_nonfinite_steps came round
                loss = next(k for k in metrics if k.startswith("train_") and k.endswith("loss"))
                raise Diverged(
                    metric=loss.removeprefix("train_"),
                    value=metrics[loss],
                    step=self.progress.step,
                    epoch=self.progress.epoch,
                    steps=self.progress.nonfinite_steps,
                )
            if final:
                metrics |= {f"test_{k}": v for k, v in self._evaluate("test").items()}
            generated = self._generate()
            seconds = time.perf_counter() - started
            report = EpochReport(
                epoch=self.progress.epoch,
                step=self.progress.step,
                total_epochs=training.epochs,
                steps_per_epoch=self.run.steps_per_epoch,
                metrics=metrics,
                is_best=is_best,
                best_test_metrics=self.progress.best_test_metrics,
                final=final,
                seconds=seconds,
                samples_per_second=(self.data.size("train") - samples) / max(seconds, 1e-9),
                samples=generated,
            )
            hook.on_epoch(report)
            stop = not final and hook.should_stop()
            every = training.checkpoint.every_epochs
            due = (
                final or stop or self._time_due() or (every is not None and self.progress.epoch % every == 0)
            )
            if due:
                checkpoint = self._save(hook, report) or checkpoint
            if early_stop:
                status = "early_stopped"
                break
            if stop:
                return FitResult(
                    self.run.model, metrics, self.progress, "stopped", checkpoint or self._checkpoint()
                )
        if checkpoint is None:  # resumed from a checkpoint of an already finished run
            self.metrics = {f"test_{k}": v for k, v in self._evaluate("test").items()}
            checkpoint = self._checkpoint()
        return FitResult(self.run.model, self.metrics, self.progress, status, checkpoint)

    def _time_due(self) -> bool:
        return time.monotonic() - self.saved_at >= self.spec.training.checkpoint.every_seconds

    def _save(self, hook: Hook, report: EpochReport | None) -> dict[str, Any] | None:
        """Write the best epoch's weights if they are not yet written, then the run as it stands (None: the
        weights are not finite, and the last finite checkpoint stays the newest)."""
        self.saved_at = time.monotonic()
        if self.progress.nonfinite_steps:
            return None
        progress = self.progress
        at_best = report is not None and progress.best_epoch == progress.epoch
        if not at_best:
            self._save_best(hook)
        checkpoint = self._checkpoint()
        hook.on_checkpoint(checkpoint, report)
        if at_best:
            self.saved_best_epoch = progress.best_epoch
        return checkpoint

    def _save_best(self, hook: Hook) -> None:
        """Write the best epoch's weights, kept aside since that epoch, unless they are written already."""
        best = self.best
        if not self.spec.training.checkpoint.keep_best:
            return  # nothing would keep it
        if best is not None and self.saved_best_epoch != best.progress.epoch:
            hook.on_checkpoint(self._checkpoint(best), None)
            self.saved_best_epoch = best.progress.epoch

    def _train_epoch(self, hook: Hook) -> bool:
        """Run the rest of the current epoch; False when the hook asked to stop before its end."""
        run, progress, batch_size = self.run, self.progress, self.spec.training.batch_size
        epoch = progress.epoch + 1
        self.epoch_start_shuffle = run.shuffle.get_state()
        if self.spec.init_from is not None:
            set_body_frozen(run.model, self.spec.model.arch, body_frozen(self.spec.init_from, progress.epoch))
        # Drawn on the CPU (one generator, the same order on every device), copied without waiting.
        order = torch.randperm(self.data.size("train"), generator=run.shuffle)
        if run.device.type == "cuda":
            order = order.pin_memory().to(run.device, non_blocking=True)
        x, y = self.data.x["train"], self.data.y["train"]
        pending: list[_PendingStep] = []
        flushed_at = time.monotonic()
        run.model.train()
        for batch in range(progress.batch_in_epoch, run.steps_per_epoch):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            lrs = {name: _lr(run.optimizers[group]) for group, name in self.lr_names.items()}
            outputs = self.procedure.train_step(
                run.step_ctx, x.index_select(0, index), None if y is None else y.index_select(0, index)
            )
            for scheduler in run.schedulers.values():
                scheduler.step()
            progress.step += 1
            progress.batch_in_epoch = batch + 1
            pending.append(_PendingStep(progress.step, len(index), outputs, lrs))
            if len(pending) >= FLUSH_STEPS or time.monotonic() - flushed_at > FLUSH_SECONDS:
                self._flush(pending, epoch, hook)
                flushed_at = time.monotonic()
                if self._time_due() and progress.batch_in_epoch < run.steps_per_epoch:
                    self._save(hook, None)  # a long epoch is checkpointed within it too
            if hook.should_stop() and progress.batch_in_epoch < run.steps_per_epoch:
                self._flush(pending, epoch, hook)
                return False
        self._flush(pending, epoch, hook)
        return True

    def _flush(self, pending: list["_PendingStep"], epoch: int, hook: Hook) -> None:
        """Reduce the pending steps to metrics (one synchronisation), add them to the epoch's sums on the
        host and report them."""
        progress = self.progress
        for steps in _equal_batches(pending):
            metrics = step_metrics(self.procedure, [step.outputs for step in steps])
            keys = list(metrics)
            rows = torch.stack([metrics[key] for key in keys], 1).tolist()
            losses = [key for key in keys if key.endswith("loss")]
            for step, row in zip(steps, rows, strict=True):
                values = dict(zip(keys, row, strict=True))
                for key, value in values.items():
                    progress.epoch_sums[key] = progress.epoch_sums.get(key, 0.0) + value * step.samples
                progress.epoch_samples += step.samples
                hook.on_step(StepReport(epoch=epoch, step=step.step, metrics=values | step.lrs))
                try:
                    self._watch_divergence(values, losses, step.step, epoch)
                except Diverged:
                    self._save_best(hook)  # what it reached before diverging stays downloadable
                    raise
        pending.clear()

    def _watch_divergence(self, values: dict[str, float], losses: list[str], step: int, epoch: int) -> None:
        """Count steps in a row whose training loss is not finite or past divergence_factor × its first
        value; raise Diverged when they reach max_nonfinite_steps."""
        progress, training = self.progress, self.spec.training
        if not progress.first_losses:
            progress.first_losses = {key: values[key] for key in losses}
        bad = next(
            (
                key
                for key in losses
                if not math.isfinite(values[key])
                or values[key] > training.divergence_factor * max(1.0, progress.first_losses.get(key, 1.0))
            ),
            None,
        )
        progress.nonfinite_steps = progress.nonfinite_steps + 1 if bad else 0
        if bad and progress.nonfinite_steps >= training.max_nonfinite_steps:
            raise Diverged(
                metric=bad, value=values[bad], step=step, epoch=epoch, steps=progress.nonfinite_steps
            )

    def _end_epoch(self) -> dict[str, float]:
        progress = self.progress
        metrics = {f"train_{k}": v / progress.epoch_samples for k, v in progress.epoch_sums.items()}
        progress.epoch += 1
        progress.batch_in_epoch, progress.epoch_sums, progress.epoch_samples = 0, {}, 0
        self.epoch_start_shuffle = self.run.shuffle.get_state()
        if self.data.size("val"):
            metrics |= {f"val_{k}": v for k, v in self._evaluate("val").items()}
        return metrics

    def _update_best(self, metrics: dict[str, float]) -> bool:
        """Track the objective's best epoch and the test score of its weights; True when this epoch is it."""
        if self.objective is None:
            return False
        progress = self.progress
        value = self._epoch_metric(metrics, self.objective.metric, "training.objective.metric")
        if not _improves(value, progress.best_value, self.objective.mode, 0.0):
            return False
        progress.best_value, progress.best_epoch = value, progress.epoch
        # Measured now, while these weights are the model's: the score of the checkpoint a user downloads as
        # `best`, kept in the progress so that a resumed run reports the same.
        progress.best_test_metrics = {f"test_{k}": v for k, v in self._evaluate("test").items()}
        state = {k: v.detach().clone() for k, v in self.run.model.state_dict().items()}
        self.best = _BestEpoch(state, replace(progress, epoch_sums={}), dict(metrics))
        return True

    def _update_early_stopping(self, metrics: dict[str, float]) -> bool:
        """True when the early-stopping metric has not improved for `patience` epochs."""
        early, target = self.spec.training.early_stopping, self.stop_target
        if early is None or target is None:
            return False
        progress = self.progress
        value = self._epoch_metric(metrics, target.metric, "training.early_stopping.metric")
        if _improves(value, progress.stop_best_value, target.mode, early.min_delta):
            progress.stop_best_value, progress.bad_epochs = value, 0
        else:
            progress.bad_epochs += 1
        return progress.bad_epochs >= early.patience

    @staticmethod
    def _epoch_metric(metrics: dict[str, float], name: str, field: str) -> float:
        if name not in metrics:
            raise SpecError.single(
                field, name, f"not an epoch metric of this run; available: {sorted(metrics)}"
            )
        return metrics[name]

    def _evaluate(self, split: str) -> dict[str, float]:
        if not self.data.size(split):
            return {}
        self.run.model.eval()
        try:
            return self.procedure.evaluate(self._eval_context(), self.data.x[split], self.data.y[split])
        finally:
            self.run.model.train()

    def _generate(self) -> SampleSet | None:
        """The procedure's samples of this epoch in raw units, beside real training samples; None for a
        network that generates nothing. The same latent vectors every epoch, so the picture shows how the
        generator moves them."""
        shape = self.data.info.sample_shape
        kind = sample_kind(shape)
        self.run.model.eval()
        try:
            generated = self.procedure.generate(self._eval_context(), COUNTS[kind])
        finally:
            self.run.model.train()
        if generated is None:
            return None
        real = self.data.x["train"][: REFERENCE_COUNTS[kind]]
        return sample_set(self.data.denormalize(generated), self.data.denormalize(real), shape)

    def _eval_context(self) -> EvalContext:
        return EvalContext(
            model=self.run.model,
            task=self.data.info.task,
            spec=self.spec.model,
            autocast=self.run.autocast,
            denormalize=self.data.denormalize,
            quality=self.data.quality,
            generator=torch.Generator(device=self.run.device).manual_seed(self.spec.training.seed + 1),
        )

    def _checkpoint(self, best: "_BestEpoch | None" = None) -> dict[str, Any]:
        """The run as it stands (resumable), or with `best`, the best epoch's weights alone."""
        # Mid-epoch, resuming must redraw the same permutation: keep the shuffle state of the epoch's start.
        rng = rng_state(self.run.shuffle)
        rng["shuffle"] = self.epoch_start_shuffle.clone()
        checkpoint = make_checkpoint(
            spec=self.spec,
            info=self.data.info,
            model=self.run.model,
            optimizers=self.run.optimizers,
            schedulers=self.run.schedulers,
            scaler=self.run.scaler,
            progress=self.progress if best is None else best.progress,
            rng=rng,
            mean=self.data.mean,
            std=self.data.std,
            metrics=self.metrics if best is None else best.metrics,
            weights=None if best is None else best.weights,
        )
        return checkpoint


class _BestEpoch(NamedTuple):
    weights: dict[str, torch.Tensor]
    progress: Progress
    metrics: dict[str, float]


def _improves(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """A non-finite value never improves: a diverging epoch is never the best one."""
    if not math.isfinite(value):
        return False
    return best is None or (value < best - min_delta if mode == "min" else value > best + min_delta)


class _PendingStep(NamedTuple):  # a tuple: built every step, cheaper than a dataclass
    step: int
    samples: int
    outputs: StepOutputs
    lrs: dict[str, float]  # the learning rate each optimizer took this step with


def _lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return lr if isinstance(lr, float) else float(lr)


def _equal_batches(pending: list[_PendingStep]) -> list[list[_PendingStep]]:
    """Consecutive runs of steps with one batch size (only an epoch's last batch can be smaller), so each
    run's outputs stack."""
    runs: list[list[_PendingStep]] = []
    for step in pending:
        if runs and runs[-1][0].samples == step.samples:
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs
