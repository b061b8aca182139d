"""Run an evaluation of a job's checkpoint (models.evaluate) and store its result.

A POSTed evaluation arrives as a Celery task on the job's queue; the task runs it in a fresh process
(`python -m workers.evaluations EVALUATION_ID`), so the task process stays free of torch, a crash or an
out-of-memory kill fails only the evaluation, and EVALUATION_TIMEOUT_SECONDS bounds it. The report that
follows a classifier's success runs inside the training process instead (`report_after_success`), which has
torch, the data and the weights at hand: it costs that job milliseconds, not a second process's start."""

import logging
import math
import os
import subprocess
import sys
import time
import traceback
from collections import Counter
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker, undefer

from app.core.queue import publish_evaluation
from app.core.settings import Settings, get_settings
from app.db import evaluations
from app.db.base import utcnow
from app.db.checkpoints import best_checkpoint_query
from app.db.engine import make_engine, make_session_factory, transaction
from app.db.job_state import newest_checkpoint, verified_bytes
from app.db.tables import Checkpoint, Dataset, Evaluation, Job
from models.dataset_info import BUILTIN_DATASETS
from models.errors import SpecError
from models.evaluate.params import ReportParams
from models.specs import JobSpec

log = logging.getLogger("nnforge.worker")
EVALUATION_TIMEOUT_SECONDS = 900
RESEND_AFTER_SECONDS = 60.0  # a queued evaluation's message is sent again this often while it waits
_resent: dict[str, float] = {}  # evaluation id -> when this process last re-sent it (time.monotonic)


def run_in_process(evaluation_id: str, settings: Settings) -> str:
    """What the Celery task does: run the evaluation in a fresh process and record a failure it could not.
    A duplicate message (the reconciler re-sends what waits long) finds it no longer queued: no process."""
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        status = session.scalar(select(Evaluation.status).where(Evaluation.id == evaluation_id))
    engine.dispose()
    if status != evaluations.EvaluationStatus.QUEUED:
        return "skipped"
    try:
        code = subprocess.run(
            [sys.executable, "-m", "workers.evaluations", evaluation_id], timeout=EVALUATION_TIMEOUT_SECONDS
        ).returncode
        error = None if code == 0 else f"the evaluation process ended with exit code {code}"
    except subprocess.TimeoutExpired:
        error = f"the evaluation ran past the limit of {EVALUATION_TIMEOUT_SECONDS} s"
    if error is None:
        return "done"
    engine = make_engine(settings.resolved_database_url)
    with transaction(make_session_factory(engine)) as session:
        evaluations.finish(session, evaluation_id=evaluation_id, error=error)  # unless it ended meanwhile
    engine.dispose()
    return "failed"


def run_evaluation(factory: sessionmaker[Session], evaluation_id: str) -> str:
    """queued → running → succeeded | failed; returns the outcome ("skipped" when it was not queued)."""
    from models.evaluate.run import evaluate  # torch: only where an evaluation runs

    with transaction(factory) as session:
        if not evaluations.start(session, evaluation_id=evaluation_id):
            return "skipped"
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        kind, params, split, checkpoint, raw = _inputs(factory, evaluation_id)
        result = evaluate(kind, params, checkpoint, raw, split)
    except SpecError as problem:  # the kind does not apply, an empty split: the user's to fix
        error = str(problem)
    except Exception:
        log.exception("evaluation %s failed", evaluation_id)
        error = traceback.format_exc(limit=20)
    with transaction(factory) as session:
        evaluations.finish(session, evaluation_id=evaluation_id, result=result, error=error)
    return "failed" if error is not None else "succeeded"


def _inputs(factory: sessionmaker[Session], evaluation_id: str) -> tuple[str, dict[str, Any], str, Any, Any]:
    from models.checkpoint import read_checkpoint
    from models.datasets import load_raw
    from models.uploads import read_dataset_file

    with factory() as session:
        evaluation = session.get_one(Evaluation, evaluation_id)
        job = session.get_one(Job, evaluation.job_id)
        row = session.scalars(
            select(Checkpoint)
            .where(Checkpoint.id == evaluation.checkpoint_id)
            .options(undefer(Checkpoint.data))
        ).first()
        if row is None:
            raise SpecError.single("checkpoint", evaluation.checkpoint_id, "the checkpoint was deleted")
        checkpoint = read_checkpoint(verified_bytes(row))
        spec = JobSpec.model_validate(job.spec)
        if spec.dataset.name is not None:
            raw = load_raw(spec.dataset)
        elif job.dataset_id is None:
            raise SpecError.single("dataset.id", spec.dataset.id, "the job's dataset was deleted")
        else:
            upload = session.get_one(Dataset, job.dataset_id)
            raw = read_dataset_file(
                upload.data,
                name=upload.filename,
                file_format=upload.format,  # type: ignore[arg-type]
                label_column=upload.label_column,
                unlabelled=upload.label_column is None,
            )
        return evaluation.kind, evaluation.params, evaluation.split, checkpoint, raw


def report_after_success(factory: sessionmaker[Session], job_id: str) -> None:
    """A classifier that succeeded gets its report on its best checkpoint and test split (the validation
    split when it has no test split), at once. Never fails the job: a failure is the evaluation's."""
    try:
        evaluation_id = _create_report(factory, job_id)
        if evaluation_id is not None:
            log.info("job %s: report %s %s", job_id, evaluation_id, run_evaluation(factory, evaluation_id))
    except Exception:  # the job's outcome is recorded already; its report can be asked for again
        log.exception("job %s: its report could not be made", job_id)


def _create_report(factory: sessionmaker[Session], job_id: str) -> str | None:
    with transaction(factory) as session:
        job = session.get_one(Job, job_id)
        spec = JobSpec.model_validate(job.spec)
        task = (
            BUILTIN_DATASETS[spec.dataset.name].task
            if spec.dataset.name is not None
            else (session.get_one(Dataset, job.dataset_id).info["task"] if job.dataset_id else None)
        )
        best = best_checkpoint_query(job)
        checkpoint = (session.scalars(best).first() if best is not None else None) or newest_checkpoint(
            session, job_id=job_id
        )
        if task != "classification" or checkpoint is None:
            return None
        split = "test" if spec.training.test_fraction > 0 else "val"
        return evaluations.create_evaluation(
            session,
            job=job,
            kind="report",
            checkpoint_id=checkpoint.id,
            split=split,
            params=ReportParams().model_dump(mode="json"),
        ).id


def settle_stale_evaluations(factory: sessionmaker[Session], celery: Celery) -> Counter[str]:
    """The reconciler's part: re-send the message of an evaluation queued for over RESEND_AFTER_SECONDS
    (lost with a restarted broker, or never sent: the API could not reach it), at most that often per
    worker, since a long job may hold the queue; fail one running past EVALUATION_TIMEOUT_SECONDS and a
    minute more (its worker died with it)."""
    counts: Counter[str] = Counter()
    now = utcnow()
    with factory() as session:
        waiting = session.execute(
            select(Evaluation.id, Job.queue)
            .join(Job, Job.id == Evaluation.job_id)
            .where(
                Evaluation.status == evaluations.EvaluationStatus.QUEUED,
                Evaluation.created_at < now - timedelta(seconds=RESEND_AFTER_SECONDS),
            )
        ).all()
        lost = session.scalars(
            select(Evaluation.id).where(
                Evaluation.status == evaluations.EvaluationStatus.RUNNING,
                Evaluation.started_at < now - timedelta(seconds=EVALUATION_TIMEOUT_SECONDS + 60),
            )
        ).all()
    for evaluation_id, queue in waiting:
        if time.monotonic() - _resent.get(evaluation_id, -math.inf) >= RESEND_AFTER_SECONDS:
            publish_evaluation(celery, evaluation_id, queue)
            _resent[evaluation_id] = time.monotonic()
            counts["evaluations_resent"] += 1
            log.warning(
                "evaluation %s: queued for over %.0f s; its message sent again",
                evaluation_id,
                RESEND_AFTER_SECONDS,
            )
    for evaluation_id in lost:
        with transaction(factory) as session:
            failed = evaluations.finish(
                session, evaluation_id=evaluation_id, error="the evaluation's worker was lost"
            )
        counts["evaluations_lost"] += failed
    return counts


def main(evaluation_id: str) -> int:
    import torch

    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    engine = make_engine(settings.resolved_database_url)
    outcome = run_evaluation(make_session_factory(engine), evaluation_id)
    log.info("evaluation %s %s", evaluation_id, outcome)
    engine.dispose()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.nice(get_settings().trainer_nice)
    sys.exit(main(sys.argv[1]))
