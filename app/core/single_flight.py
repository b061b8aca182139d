"""One worker-thread call per key at a time. Requests that need the same database answer at the same moment
(a cached answer has just expired under load) share one read instead of each taking a thread, a connection
and the GIL for it: together they stalled the event loop (bench.api_load's p99)."""

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self.pending: dict[Hashable, asyncio.Future[T]] = {}  # touched by the event loop's thread only

    def call(self, key: Hashable, load: Callable[[], T], on_result: Callable[[T], None]) -> asyncio.Future[T]:
        """The call in flight for `key`, or a new one of `load` in a worker thread. `on_result` sees a
        successful result once, before any caller resumes; await the future through `asyncio.shield`, so a
        caller that goes away does not cancel the others' read."""
        pending = self.pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(run_in_threadpool(load))
            self.pending[key] = pending

            def done(future: asyncio.Future[T]) -> None:  # also retrieves an error nobody awaited
                del self.pending[key]
                if not future.cancelled() and future.exception() is None:
                    on_result(future.result())

            pending.add_done_callback(done)
        return pending
