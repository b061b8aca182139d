"""Run one claimed job: the same `fit()` as everywhere, with a hook that writes progress and metrics to
the database in batches, stores checkpoints and stops when asked (cancel, shutdown, lost lease)."""

import logging
import math
import os
import resource
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from app.db.checkpoint_retention import RetentionPolicy
from app.db.job_state import ErrorKind, JobStatus, LeaseLost
from models.checkpoint import checkpoint_bytes, read_checkpoint
from models.errors import Diverged, SpecError
from models.raw_dataset import RawDataset
from models.specs import JobSpec
from models.train import EpochReport, FitResult, Hook, StepReport, fit
from models.uploads import read_dataset_file
from workers.evaluations import report_after_success
from workers.job_store import ClaimedJob, JobStore, MetricRow, NoSpace
from workers.sweep_pruning import EpochCallback, trial_reporter
from workers.write_behind import WriteBehind

log = logging.getLogger("nnforge.worker")


class StopSignals:
    """Set from other threads (the lease keeper, a signal handler); read by the training thread."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.shutdown = threading.Event()
        self.lease_lost = threading.Event()
        self.pruned = threading.Event()  # a sweep's pruner stopped this trial (workers/sweep_pruning.py)
        self.stalled = threading.Event()  # a step ran past MAX_STEP_SECONDS (StepClock)

    def any(self) -> bool:
        stops = (self.cancel, self.shutdown, self.lease_lost, self.pruned, self.stalled)
        return any(signal.is_set() for signal in stops)


class StepClock:
    """When the training loop last called the hook, against MAX_STEP_SECONDS, and which step it is on. The
    loop calls `should_stop` after every step, and reports steps (`on_step`) in groups: the steps done are the
    last one reported plus the stop checks since, less the check that follows a report in the same iteration.
    The training thread judges each interval as it ends (`tick`); the lease keeper judges the one in progress
    (`late`), for a step that never ends."""

    def __init__(self, limit: float, step: int) -> None:
        self.limit, self.done = limit, step
        self.epoch: int | None = None
        self.reported = False  # a report came since the last stop check: that check adds no step
        self.last = time.monotonic()
        self.overrun: str | None = None  # what ran past the limit, once something did

    def tick(self, signals: StopSignals, interval: str | None = None) -> None:
        """A call from the training loop; `interval`: what ran since the previous one, when not a step."""
        if self.overrun is None and (late := self.late(interval)) is not None:
            self.overrun = late
            signals.stalled.set()
        self.last = time.monotonic()

    def reported_step(self, step: int, epoch: int) -> None:
        self.done, self.epoch, self.reported = step, epoch, True

    def checked(self) -> None:
        """A stop check, which follows each step."""
        self.done, self.reported = self.done + (not self.reported), False

    def late(self, interval: str | None = None) -> str | None:
        """What is past the limit now, in words naming the step; None while within it."""
        if time.monotonic() - self.last <= self.limit:
            return None
        epoch = f" (epoch {self.epoch})" if self.epoch is not None else ""
        what = interval or f"step {self.done + 1}{epoch} (or the evaluation or checkpoint before it)"
        return f"{what} made no progress for over MAX_STEP_SECONDS = {self.limit:g} s"


class LeaseKeeper(threading.Thread):
    """Renews the job's lease every `interval` seconds, apart from the training thread, so a long step or a
    checkpoint save never lets it lapse; notes cancel requests and a lost lease."""

    def __init__(self, store: JobStore, signals: StopSignals, interval: float, clock: StepClock) -> None:
        super().__init__(name="lease-keeper", daemon=True)
        self.store, self.signals, self.interval, self.clock = store, signals, interval, clock
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            if (late := self.clock.late()) is not None:
                end_stalled_process(self.store, late)
            try:
                if self.store.touch():
                    self.signals.cancel.set()
            except LeaseLost:
                self.signals.lease_lost.set()
                return
            except Exception:  # an outage past the store's retries: keep trying, training goes on
                log.exception("job %s: lease renewal failed", self.store.job_id)


def end_stalled_process(store: JobStore, message: str) -> None:
    """A step that does not end cannot be waited for: record the timeout and end the process from here (the
    training thread is inside the step; the lease fences any write it would still make)."""
    log.error("job %s: %s; stopping its training process", store.job_id, message)
    store.finish(status=JobStatus.FAILED, error_type=ErrorKind.TIMEOUT, error_message=message)
    logging.shutdown()  # the job's log lines first
    os._exit(0)  # the outcome is recorded: the task reads exit code 0 as done


class DatabaseHook(Hook):
    """Buffers metric rows and writes them with the progress every `interval` seconds and before each
    checkpoint (never a commit per step or per epoch), in order, on a write-behind thread: the training
    thread waits only in `flush()` and, while the previous checkpoint is still being written, before the
    next one."""

    def __init__(
        self, store: JobStore, signals: StopSignals, interval: float, policy: RetentionPolicy
    ) -> None:
        self.store, self.signals, self.interval, self.policy = store, signals, interval, policy
        self.told_storage_full = False
        self.rows: list[MetricRow] = []
        self.progress: dict[str, Any] = {}
        self.last_flush = time.monotonic()
        self.writes = WriteBehind()
        self.clock = StepClock(math.inf, 0)  # MAX_STEP_SECONDS: run_claimed sets the job's
        self.epoch_end: EpochCallback | None = None  # a sweep's trial reports to its pruner here

    def on_step(self, report: StepReport) -> None:
        self.clock.tick(self.signals)
        self.clock.reported_step(report.step, report.epoch)
        self.rows += [
            MetricRow(name, report.step, report.epoch, value) for name, value in report.metrics.items()
        ]
        self.progress |= {"step": report.step}

    def on_epoch(self, report: EpochReport) -> None:
        self.clock.tick(self.signals, f"the evaluation of epoch {report.epoch}")
        self.clock.reported_step(report.step, report.epoch + 1)
        self.rows += [
            MetricRow(name, report.step, report.epoch, value) for name, value in report.metrics.items()
        ]
        self.progress |= {"epoch": report.epoch, "step": report.step, "latest_metrics": report.metrics}
        if report.is_best:
            self.progress |= {
                "best_metrics": report.metrics,
                "best_epoch": report.epoch,
                "best_test_metrics": report.best_test_metrics,
            }
        self.progress |= {"epoch_seconds": report.seconds, "samples_per_second": report.samples_per_second}
        if report.samples is not None:  # in the epoch's own write: /samples is never behind the progress
            self.progress["latest_samples"] = {"epoch": report.epoch, **asdict(report.samples)}
        log.info(
            "job %s epoch %d/%d %s",
            self.store.job_id,
            report.epoch,
            report.total_epochs,
            " ".join(f"{k}={v:.4g}" for k, v in report.metrics.items()),
        )
        # No write of its own: the next heartbeat's or checkpoint's carries it. A write per epoch cost small
        # networks 20-30 % of their speed (digits epochs last ~20 ms; a write is ~4 ms of CPU on 2 cores).
        if self.epoch_end is not None:
            self.epoch_end(report)

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.clock.tick(self.signals)
        data = checkpoint_bytes(checkpoint)  # serialised here: the optimizer state in it keeps changing
        progress = checkpoint["progress"]
        self.writes.drain()  # the previous checkpoint is written: at most one waits in memory (an outage)
        self.flush(wait=False)  # metrics first, so a checkpoint never points past the rows that were written
        save = partial(
            self.store.save_checkpoint,
            data=data,
            epoch=progress["epoch"],
            step=progress["step"],
            end_of_epoch=progress["batch_in_epoch"] == 0,
            resumable=checkpoint["resumable"],
            metrics=dict(checkpoint["metrics"]),
            policy=self.policy,
        )
        self.writes.submit(partial(self._fenced, partial(self._save, save)))

    def _save(self, save: Callable[[], bool]) -> None:
        if save() and not self.told_storage_full:
            self.told_storage_full = True
            log.warning(
                "job %s: its owner is at the storage limit (MAX_STORAGE_BYTES_PER_OWNER); training goes on, "
                "keeping only its newest checkpoint",
                self.store.job_id,
            )

    def should_stop(self) -> bool:
        self.clock.tick(self.signals)
        self.clock.checked()
        if time.monotonic() - self.last_flush >= self.interval:
            self.flush(wait=False)
        return self.signals.any()

    def flush(self, *, wait: bool = True) -> None:
        """Write the buffered rows and progress; with `wait`, also wait for every earlier write."""
        if self.signals.lease_lost.is_set():
            raise LeaseLost(self.store.job_id)
        write = partial(self.store.write_progress, metrics=self.rows, progress=self.progress)
        self.rows, self.progress = [], {}
        self.last_flush = time.monotonic()
        self.writes.submit(partial(self._fenced, write))
        if wait:
            self.writes.drain()

    def _fenced(self, write: Callable[[], object]) -> None:
        try:
            write()
        except LeaseLost:
            self.signals.lease_lost.set()  # the training thread stops at its next step
            raise


def out_of_memory(error: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, torch's CPU allocator (which raises RuntimeError) at
    the training process's memory limit, or CUDA's OutOfMemoryError."""
    return (
        isinstance(error, MemoryError)
        or type(error).__name__ == "OutOfMemoryError"
        or (isinstance(error, RuntimeError) and "can't allocate memory" in str(error))
    )


def memory_limit_note() -> str:
    limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    return f" (a training process may use MAX_JOB_MEMORY_BYTES = {limit:,} bytes, its own ~0.35 GB included)"


def retention_policy(spec: JobSpec) -> RetentionPolicy:
    kept, objective = spec.training.checkpoint, spec.training.objective
    best = (objective.metric, objective.mode) if objective is not None else None
    return RetentionPolicy(keep_last=kept.keep_last, keep_best=kept.keep_best, objective=best)


def load_dataset(store: JobStore, claimed: ClaimedJob) -> RawDataset | None:
    if claimed.dataset_id is None:
        return None  # a built-in: fit() resolves it by name
    data, filename, file_format, label_column = store.dataset_bytes(claimed.dataset_id)
    return read_dataset_file(
        data,
        name=filename,
        file_format=file_format,  # type: ignore[arg-type]
        label_column=label_column,
        unlabelled=label_column is None,  # the upload was accepted as it is: asked and answered then
    )


def run_claimed(
    store: JobStore,
    claimed: ClaimedJob,
    signals: StopSignals,
    heartbeat_seconds: float,
    max_step_seconds: float,
) -> str:
    """Train a claimed job until it ends or is stopped, and record the outcome; returns what happened:
    succeeded, failed, cancelled, handed_back (shutdown) or lease_lost. A step past `max_step_seconds`
    fails it as timeout: the training thread notices when the step ends, the lease keeper when it does not."""
    clock = StepClock(max_step_seconds, 0)
    keeper = LeaseKeeper(store, signals, heartbeat_seconds, clock)
    keeper.start()
    try:
        return _train(store, claimed, signals, heartbeat_seconds, clock)
    finally:
        keeper.stopped.set()
        keeper.join()


def _train(
    store: JobStore, claimed: ClaimedJob, signals: StopSignals, heartbeat_seconds: float, clock: StepClock
) -> str:
    try:
        spec = JobSpec.model_validate(claimed.spec)
        dataset = load_dataset(store, claimed)
        resume = None
        if claimed.attempt > 1:  # a first attempt has no checkpoint and no steps to forget: 2 queries spared
            saved = store.latest_checkpoint()
            resume = read_checkpoint(saved) if saved is not None else None
            # A lost attempt's steps are rewritten: from its checkpoint, or from the start when it left none.
            store.forget_metrics_after(resume["progress"]["step"] if resume is not None else 0)
        hook = DatabaseHook(store, signals, heartbeat_seconds, retention_policy(spec))
        clock.done = resume["progress"]["step"] if resume is not None else 0
        hook.clock = clock
        hook.epoch_end = trial_reporter(store, signals.pruned)
        log.info(
            "job %s attempt %d starts%s",
            claimed.id,
            claimed.attempt,
            f" from step {resume['progress']['step']}" if resume else "",
        )
        try:
            parent = store.parent_checkpoint() if resume is None else None  # init_from: a new run's start
            parent_state = read_checkpoint(parent) if parent is not None else None
            result: FitResult | Diverged = fit(
                spec, hook=hook, dataset=dataset, resume=resume, parent=parent_state
            )
        except Diverged as error:  # an outcome like any other: its metrics up to the end are written
            result = error
        finally:
            clock.limit = math.inf  # training is over: the final writes and a report are no step
            hook.writes.close()  # the writes already submitted finish before the outcome is recorded
        hook.flush()
    except LeaseLost:
        log.warning("job %s: lease lost; stopping without further writes", claimed.id)
        return "lease_lost"
    except SpecError as error:
        store.finish(status=JobStatus.FAILED, error_type=ErrorKind.SPEC_ERROR, error_message=str(error))
        return JobStatus.FAILED
    except NoSpace as error:  # an operator's problem, said in a line: no traceback
        log.error("job %s: %s", claimed.id, error)
        store.finish(status=JobStatus.FAILED, error_type=ErrorKind.NO_SPACE, error_message=str(error))
        return JobStatus.FAILED
    except Exception as error:
        if out_of_memory(error):
            message = f"out of memory: {str(error).strip().splitlines()[-1]}{memory_limit_note()}"
            log.error("job %s: %s", claimed.id, message)
            store.finish(status=JobStatus.FAILED, error_type=ErrorKind.OUT_OF_MEMORY, error_message=message)
            return JobStatus.FAILED
        log.exception("job %s failed", claimed.id)
        store.finish(
            status=JobStatus.FAILED,
            error_type=ErrorKind.INTERNAL,
            error_message=traceback.format_exc(limit=20),
        )
        return JobStatus.FAILED
    if isinstance(result, Diverged):
        log.warning("job %s %s", claimed.id, result)
        store.finish(status=JobStatus.FAILED, error_type=ErrorKind.DIVERGED, error_message=str(result))
        return JobStatus.FAILED
    if clock.overrun is not None:
        log.error("job %s: %s", claimed.id, clock.overrun)
        store.finish(status=JobStatus.FAILED, error_type=ErrorKind.TIMEOUT, error_message=clock.overrun)
        return JobStatus.FAILED
    if result.status != "stopped":
        if store.finish(status=JobStatus.SUCCEEDED):
            report_after_success(store.factory, claimed.id)
        return JobStatus.SUCCEEDED
    if signals.cancel.is_set():
        store.finish(
            status=JobStatus.CANCELLED, error_type=ErrorKind.CANCELLED, error_message="cancelled on request"
        )
        return JobStatus.CANCELLED
    if signals.pruned.is_set():
        store.finish(status=JobStatus.PRUNED)
        return JobStatus.PRUNED
    if store.hand_back() is None:
        return "lease_lost"
    log.info("job %s handed back to the queue at step %d", claimed.id, result.progress.step)
    return "handed_back"
