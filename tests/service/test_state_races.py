"""Job state under concurrency, on the real PostgreSQL: every transition is conditional, so a race has one
winner, terminal states never change, and a runner that lost its lease can write nothing."""

import threading
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import update

from app.api.jobs import JobConflict, create_job, request_cancel
from app.api.schemas import JobCreate
from app.core.queue import make_celery
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.engine import make_engine, make_session_factory
from app.db.job_state import LeaseLost
from app.db.tables import Job
from workers.job_store import ClaimedJob, JobStore, claim_next
from workers.reconciler import Reconciler

SPEC = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 1},
}
LEGAL = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("running", "queued"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
}


@pytest.fixture(scope="module")
def factory(api_settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(api_settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _new_job(factory, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    """A queued job alone in a queue of its own, so that a claim of that queue can only take this job."""
    with factory() as session:
        job = create_job(
            session=session,
            job_in=JobCreate.model_validate(SPEC),
            owner=f"race-{uuid.uuid4()}",
            limits=settings,
        )
        job.queue = _queue_of(job.id)
        session.commit()
        return job.id


def _queue_of(job_id: str) -> str:
    return f"race-{job_id[:8]}"


def _claim(factory, job_id: str, token: str, limit: int) -> ClaimedJob | None:  # type: ignore[no-untyped-def]
    """A delivery of the job's message: a claim of its queue."""
    return claim_next(factory, queue=_queue_of(job_id), token=token, max_running_per_owner=limit)


def _race(*actions):  # type: ignore[no-untyped-def]
    """Start the actions at once; their results. Any exception fails the race: a loser must lose by its
    result (None, False), and an exception counted as a result could hide a second winner or a crash."""
    barrier = threading.Barrier(len(actions))
    results: list[object] = [None] * len(actions)
    errors: list[Exception] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = actions[i]()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise ExceptionGroup(f"{len(errors)} of {len(actions)} racing actions raised", errors)
    return results


def test_cancel_racing_a_claim_has_exactly_one_winner_50_times(factory, api_settings: Settings) -> None:
    for _ in range(50):
        job_id = _new_job(factory, api_settings)

        def cancel(job_id: str = job_id) -> str:
            with factory() as session:
                job = request_cancel(session=session, job=session.get_one(Job, job_id))
                session.commit()
                return job.status

        claimed, cancelled_status = _race(
            lambda j=job_id: _claim(factory, j, f"runner-{uuid.uuid4()}", 10), cancel
        )
        with factory() as session:
            final = session.get_one(Job, job_id)
        if claimed is None:
            assert (cancelled_status, final.status) == ("cancelled", "cancelled")
        else:
            assert (cancelled_status, final.status, final.cancel_requested) == ("running", "running", True)


def test_cancel_racing_completion_has_exactly_one_winner_50_times(factory, api_settings: Settings) -> None:
    for _ in range(50):
        job_id = _new_job(factory, api_settings)
        store = JobStore(factory, job_id, f"runner-{uuid.uuid4()}")
        assert _claim(factory, job_id, store.token, 10) is not None
        done, cancelled = _race(
            lambda s=store: s.finish(status="succeeded"),
            lambda s=store: s.finish(status="cancelled", error_type="cancelled"),
        )
        assert {done, cancelled} == {True, False}  # one winner, and the loser says so
        with factory() as session:
            final = session.get_one(Job, job_id)
            assert final.status == ("succeeded" if done else "cancelled")
            with pytest.raises(JobConflict):
                request_cancel(session=session, job=final)
        assert store.finish(status="failed") is False  # terminal states never change


def test_a_claim_waits_while_the_owner_runs_its_limit_of_jobs(factory, api_settings: Settings) -> None:
    first, second = _new_job(factory, api_settings), _new_job(factory, api_settings)
    with factory() as session:  # one owner for both
        session.execute(update(Job).where(Job.id.in_([first, second])).values(owner="busy-owner"))
        session.commit()
    assert _claim(factory, first, "a", 1) is not None
    assert _claim(factory, second, "b", 1) is None  # the limit counts the owner's jobs in every queue
    with factory() as session:
        assert session.get_one(Job, second).status == "queued"
    assert JobStore(factory, first, "a").finish(status="succeeded")
    assert _claim(factory, second, "b", 1) is not None


class JobLifecycle(RuleBasedStateMachine):
    """Create, cancel, deliver (possibly twice), kill (the lease lapses), complete — in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.settings = JobLifecycle.app_settings
        self.factory = JobLifecycle.session_factory
        self.job_id = _new_job(self.factory, self.settings)
        self.stores: list[JobStore] = []
        self.history = ["queued"]

    def _status(self) -> str:
        with self.factory() as session:
            return session.get_one(Job, self.job_id).status

    def _record(self) -> None:
        status = self._status()
        if status != self.history[-1]:
            self.history.append(status)

    @rule()
    def deliver(self) -> None:
        store = JobStore(self.factory, self.job_id, f"runner-{uuid.uuid4()}")
        if _claim(self.factory, self.job_id, store.token, 100) is not None:
            self.stores.append(store)
        self._record()

    @rule()
    def cancel(self) -> None:
        with self.factory() as session:
            try:
                request_cancel(session=session, job=session.get_one(Job, self.job_id))
                session.commit()
            except JobConflict:
                pass
        self._record()

    @rule()
    def kill_and_reconcile(self) -> None:
        with self.factory() as session:
            session.execute(
                update(Job).where(Job.id == self.job_id).values(heartbeat_at=utcnow() - timedelta(hours=1))
            )
            session.commit()
        reconciler = Reconciler(self.factory, JobLifecycle.celery, self.settings)
        reconciler.take_back_lapsed_leases()
        self._record()

    @precondition(lambda self: self.stores)
    @rule(which=st.integers(min_value=0), outcome=st.sampled_from(["succeeded", "failed", "cancelled"]))
    def complete(self, which: int, outcome: str) -> None:
        store = self.stores[which % len(self.stores)]
        is_current = store is self.stores[-1] and self._status() == "running"
        assert store.finish(status=outcome) == is_current
        self._record()

    @precondition(lambda self: len(self.stores) > 1)
    @rule()
    def stale_runner_writes_nothing(self) -> None:
        with pytest.raises(LeaseLost):
            self.stores[0].touch()

    @invariant()
    def only_legal_transitions(self) -> None:
        for before, after in zip(self.history, self.history[1:], strict=False):
            assert (before, after) in LEGAL, self.history
        terminal = [s for s in self.history if s in ("succeeded", "failed", "cancelled")]
        assert len(terminal) <= 1 and (not terminal or self.history[-1] == terminal[0])


def test_job_lifecycle_state_machine(factory, api_settings: Settings) -> None:
    JobLifecycle.app_settings = api_settings.model_copy(update={"lease_seconds": 1.0})
    JobLifecycle.session_factory = factory
    JobLifecycle.celery = make_celery(api_settings)
    runner = JobLifecycle.TestCase
    runner.settings = settings(
        max_examples=25, stateful_step_count=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    runner().runTest()
