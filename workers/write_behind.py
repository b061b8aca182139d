"""Database writes off the training thread: a thread that runs them one at a time, in the order submitted,
so a training step never waits on a round trip (at an epoch's end, the synchronous write was 10–20 % of a
small network's epoch)."""

import queue
import threading
from collections.abc import Callable


class WriteBehind(threading.Thread):
    """Runs submitted writes in order. The first failure is kept and later writes are skipped (nothing is
    written after, say, a lost lease); `check()`, `submit()` and `drain()` raise it on the caller's thread.
    After `close()`, `submit()` runs a write on the caller's thread."""

    def __init__(self) -> None:
        super().__init__(name="write-behind", daemon=True)
        self.tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.error: BaseException | None = None
        self.start()

    def submit(self, write: Callable[[], None]) -> None:
        self.check()
        if self.is_alive():
            self.tasks.put(write)
        else:
            write()

    def drain(self) -> None:
        """Wait until every write submitted so far has run; raise the first failure."""
        self.tasks.join()
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Let the submitted writes finish, then stop the thread. Never raises: `check()` does."""
        if self.is_alive():
            self.tasks.put(None)
            self.join()

    def run(self) -> None:
        while True:
            write = self.tasks.get()
            try:
                if write is None:
                    return
                if self.error is None:
                    write()
            except BaseException as error:  # handed to the training thread, which decides
                self.error = error
            finally:
                self.tasks.task_done()
