"""Keeps the training process's log lines with its job: a logging.Handler that buffers the records of the
`nnforge.*` loggers (and Python warnings) and writes them to `job_log` in batches from a background thread,
so the training loop never waits on the database to log a line."""

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from app.core.request_id import ENV as REQUEST_ID_ENV
from app.db import job_state
from app.db.engine import transaction
from app.db.job_logs import JobLog

FLUSH_SECONDS = 0.5
MAX_BUFFERED = 10_000  # lines kept while the database is unreachable; older ones are dropped past this
MAX_MESSAGE_CHARS = 20_000
CAPTURED_LOGGERS = ("nnforge", "py.warnings")
log = logging.getLogger("nnforge.worker")


class JobLogHandler(logging.Handler):
    def __init__(
        self, factory: sessionmaker[Session], job_id: str, attempt: int, flush_seconds: float = FLUSH_SECONDS
    ) -> None:
        super().__init__(level=logging.INFO)
        self.factory, self.job_id, self.attempt = factory, job_id, attempt
        self.setFormatter(logging.Formatter("%(message)s"))  # appends the traceback of log.exception
        self.rows: list[dict[str, Any]] = []
        self.rows_lock = threading.Lock()
        self.stopping = threading.Event()
        self.interval = flush_seconds
        self.thread = threading.Thread(target=self._flush_periodically, name="job-log", daemon=True)
        self.thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        row = {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "level": record.levelname[:10],
            "logger": record.name[:100],
            "message": self.format(record)[:MAX_MESSAGE_CHARS],
            "time": datetime.fromtimestamp(record.created, UTC),
        }
        with self.rows_lock:
            self.rows.append(row)
            del self.rows[:-MAX_BUFFERED]

    def flush(self) -> None:
        with self.rows_lock:
            rows, self.rows = self.rows, []
        if not rows:
            return
        try:
            with transaction(self.factory) as session:
                # Fenced: once another attempt has claimed the job (this one's lease was taken back while,
                # say, its host was cut off), this attempt's lines are dropped, never mixed into the log.
                if job_state.is_current_attempt(session, job_id=self.job_id, attempt=self.attempt):
                    session.execute(insert(JobLog), rows)
        except Exception as error:  # the job must not fail because its log could not be written: retry later
            with self.rows_lock:
                self.rows[:0] = rows
                del self.rows[:-MAX_BUFFERED]
            print(f"job log of {self.job_id} not written yet: {type(error).__name__}", file=sys.stderr)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.flush()
        super().close()

    def _flush_periodically(self) -> None:
        while not self.stopping.wait(self.interval):
            self.flush()


@contextmanager
def job_log(
    factory: sessionmaker[Session], job_id: str, attempt: int, device: str
) -> Iterator[JobLogHandler]:
    """Send the `nnforge.*` loggers and Python warnings to the job's log while the block runs; `device` is
    the spec's training.device."""
    handler = JobLogHandler(factory, job_id, attempt)
    loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
    logging.captureWarnings(True)
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    submitted_by = f" (request {os.environ[REQUEST_ID_ENV]})" if os.environ.get(REQUEST_ID_ENV) else ""
    log.info(
        "job %s attempt %d: training process %d on %s%s",
        job_id,
        attempt,
        os.getpid(),
        describe_device(device),
        submitted_by,
    )
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


def describe_device(requested: str) -> str:
    """The device fit() will pick (models.train.resolve_device), said for a person."""
    import torch

    threads = f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    if requested != "cpu" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}; {threads})"
    return f"cpu ({threads})"
