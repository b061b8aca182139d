"""Run one claimed job: the same `fit()` as everywhere, with a hook that writes progress and metrics to
the database in batches, stores checkpoints and reads the cancel flag."""

import logging
import time
import traceback
from typing import Any

from models.checkpoint import checkpoint_bytes, read_checkpoint
from models.errors import SpecError
from models.raw_dataset import RawDataset
from models.specs import JobSpec
from models.train import EpochReport, Hook, StepReport, fit
from models.uploads import read_dataset_file
from workers.job_store import ClaimedJob, JobStore, LeaseLost, MetricRow

log = logging.getLogger("nnforge.worker")


class DatabaseHook(Hook):
    """Buffers metric rows and writes them with the progress once per heartbeat (not a commit per step)."""

    def __init__(self, store: JobStore, heartbeat_seconds: float) -> None:
        self.store, self.interval = store, heartbeat_seconds
        self.rows: list[MetricRow] = []
        self.progress: dict[str, Any] = {}
        self.cancel_requested = False
        self.last_beat = time.monotonic()

    def on_step(self, report: StepReport) -> None:
        self.rows += [MetricRow(name, report.step, report.epoch, value) for name, value in report.metrics.items()]
        self.progress |= {"step": report.step}

    def on_epoch(self, report: EpochReport) -> None:
        self.rows += [MetricRow(name, report.step, report.epoch, value) for name, value in report.metrics.items()]
        self.progress |= {"epoch": report.epoch, "step": report.step, "latest_metrics": report.metrics}
        if report.is_best:
            self.progress |= {"best_metrics": report.metrics, "best_epoch": report.epoch}
        log.info("job %s epoch %d/%d %s", self.store.job_id, report.epoch, report.total_epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in report.metrics.items()))
        self.beat()

    def on_checkpoint(self, checkpoint: dict[str, Any], report: EpochReport | None) -> None:
        self.beat()  # metrics first, so a checkpoint never points past the rows that were written
        progress = checkpoint["progress"]
        self.store.save_checkpoint(data=checkpoint_bytes(checkpoint), epoch=progress["epoch"],
                                   step=progress["step"], end_of_epoch=report is not None,
                                   metrics=dict(checkpoint["metrics"]))

    def should_stop(self) -> bool:
        if time.monotonic() - self.last_beat >= self.interval:
            self.beat()
        return self.cancel_requested

    def beat(self) -> None:
        self.cancel_requested = self.store.heartbeat(metrics=self.rows, progress=self.progress)
        self.rows, self.progress = [], {}
        self.last_beat = time.monotonic()


def load_dataset(store: JobStore, claimed: ClaimedJob) -> RawDataset | None:
    if claimed.dataset_id is None:
        return None  # a built-in: fit() resolves it by name
    data, filename, file_format, label_column = store.dataset_bytes(claimed.dataset_id)
    return read_dataset_file(data, name=filename, file_format=file_format,  # type: ignore[arg-type]
                             label_column=label_column)


def run_claimed(store: JobStore, claimed: ClaimedJob, heartbeat_seconds: float) -> str:
    """Train a claimed job to its end and record the outcome; returns the final status."""
    try:
        spec = JobSpec.model_validate(claimed.spec)
        dataset = load_dataset(store, claimed)
        saved = store.latest_checkpoint()
        resume = read_checkpoint(saved) if saved is not None else None
        if resume is not None:
            store.forget_metrics_after(resume["progress"]["step"])
        hook = DatabaseHook(store, heartbeat_seconds)
        log.info("job %s attempt %d starts%s", claimed.id, claimed.attempt,
                 f" from step {resume['progress']['step']}" if resume else "")
        result = fit(spec, hook=hook, dataset=dataset, resume=resume)
        hook.beat()
    except LeaseLost:
        log.warning("job %s: lease lost; stopping without further writes", claimed.id)
        return "lease_lost"
    except SpecError as error:
        store.finish(status="failed", error_type="spec_error", error_message=str(error))
        return "failed"
    except Exception as error:
        kind = "out_of_memory" if type(error).__name__ == "OutOfMemoryError" else "internal"
        log.exception("job %s failed", claimed.id)
        store.finish(status="failed", error_type=kind, error_message=traceback.format_exc(limit=20))
        return "failed"
    if result.status == "stopped":
        store.finish(status="cancelled", error_type="cancelled", error_message="cancelled on request")
        return "cancelled"
    store.finish(status="succeeded")
    return "succeeded"
