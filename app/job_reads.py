"""Recent answers of GET /v1/jobs/{id}, the route clients and dashboards poll, kept for a fraction of the
heartbeat: a running job's row changes about once per HEARTBEAT_SECONDS, so a poller sees the same
progress, and the answer costs no worker thread and no database round trip (bench.api_load measures both).

Each answer is kept with its owner and given only to that owner. A cancel through this process drops the
job's answer at once, and an answer read before the cancel cannot be stored after it (a generation count
per job)."""

import threading
import time
from collections import OrderedDict


class RecentJobReads:
    def __init__(self, seconds: float, size: int = 10_000) -> None:
        self.seconds, self.size = seconds, size
        self.answers: OrderedDict[str, tuple[str, bytes, float]] = OrderedDict()  # job -> owner, body, until
        self.generations: dict[str, int] = {}
        self.lock = threading.Lock()

    def get(self, job_id: str, owner: str) -> bytes | None:
        with self.lock:
            found = self.answers.get(job_id)
        if found is None or found[0] != owner or found[2] < time.monotonic():
            return None
        return found[1]

    def generation(self, job_id: str) -> int:
        """Take before reading the row; `put` stores the answer only if no change came in between."""
        with self.lock:
            return self.generations.get(job_id, 0)

    def put(self, job_id: str, owner: str, body: bytes, generation: int) -> None:
        if self.seconds <= 0:
            return
        with self.lock:
            if self.generations.get(job_id, 0) != generation:
                return
            self.answers[job_id] = (owner, body, time.monotonic() + self.seconds)
            self.answers.move_to_end(job_id)
            while len(self.answers) > self.size:
                dropped, _ = self.answers.popitem(last=False)
                self.generations.pop(dropped, None)

    def forget(self, job_id: str) -> None:
        """The job changed through this process: its next read goes to the database."""
        with self.lock:
            self.answers.pop(job_id, None)
            self.generations[job_id] = self.generations.get(job_id, 0) + 1
