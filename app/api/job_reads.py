"""Recent answers of GET /v1/jobs/{id}, the route clients and dashboards poll, kept for a fraction of the
heartbeat: a running job's row changes about once per HEARTBEAT_SECONDS, so a poller sees the same
progress, and the answer costs no worker thread and no database round trip (bench.api_load measures both).

Each answer is kept with its owner and given only to that owner. A cancel through this process drops the
job's answer at once, and an answer read before the cancel cannot be stored after it (a generation count
per job). One read at a time refreshes an answer (app/single_flight.py), started late in its life by the
request that finds it there: when every request in flight read the expired row at once, they stalled the
event loop together (bench.api_load's p99 was 9× its p50)."""

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from app.core.single_flight import SingleFlight

REFRESH_AT = 0.9  # of an answer's life: late, so a polled job costs about one read per STATUS_CACHE_SECONDS


class _Answer(NamedTuple):
    owner: str
    body: bytes
    refresh_at: float  # past this, the next request starts a refresh in the background
    until: float  # past this, requests wait for a refresh


class RecentJobReads:
    def __init__(self, seconds: float, size: int = 10_000) -> None:
        self.seconds, self.size = seconds, size
        self.answers: OrderedDict[str, _Answer] = OrderedDict()  # job id ->
        self.generations: dict[str, int] = {}
        self.lock = threading.Lock()
        self.loading: SingleFlight[bytes] = SingleFlight()

    async def read(self, job_id: str, owner: str, load: Callable[[], bytes]) -> bytes:
        """The kept answer, or `load()`'s (run in a worker thread, one at a time per job and owner). Late in
        an answer's life (REFRESH_AT) the next request starts its refresh and still gets it, so a polled
        job's requests seldom wait for the database; one that finds it expired waits for the refresh."""
        now = time.monotonic()
        with self.lock:
            found = self.answers.get(job_id)
        if found is not None and found.owner == owner and now < found.until:
            if now >= found.refresh_at:
                self._refresh(job_id, owner, load)
            return found.body
        return await asyncio.shield(self._refresh(job_id, owner, load))

    def generation(self, job_id: str) -> int:
        """Take before reading the row; `put` stores the answer only if no change came in between."""
        with self.lock:
            return self.generations.get(job_id, 0)

    def put(self, job_id: str, owner: str, body: bytes, generation: int) -> None:
        if self.seconds <= 0:
            return
        now = time.monotonic()
        with self.lock:
            if self.generations.get(job_id, 0) != generation:
                return
            self.answers[job_id] = _Answer(owner, body, now + self.seconds * REFRESH_AT, now + self.seconds)
            self.answers.move_to_end(job_id)
            while len(self.answers) > self.size:
                dropped, _ = self.answers.popitem(last=False)
                self.generations.pop(dropped, None)

    def forget(self, job_id: str) -> None:
        """The job changed through this process: its next read goes to the database."""
        with self.lock:
            self.answers.pop(job_id, None)
            self.generations[job_id] = self.generations.get(job_id, 0) + 1

    def _refresh(self, job_id: str, owner: str, load: Callable[[], bytes]) -> asyncio.Future[bytes]:
        generation = self.generation(job_id)
        return self.loading.call(
            (job_id, owner), load, lambda body: self.put(job_id, owner, body, generation)
        )
