"""The fork server of a CPU worker's task process: one long-lived process that imports torch, the engine and
the database driver once, then forks a training process per job, which starts in milliseconds instead of
importing for 1.5 s of CPU beside the job before it (which, on two cores, slowed that job down).

    python -m workers.zygote REPORT_FD PLACEHOLDER    # then reads "QUEUE LEASE_TOKEN JOB_ID" lines on stdin

For each line it forks a child that runs `workers.trainer.main` exactly as a standby process would (claim,
train, exit), and reports on REPORT_FD `started PID` and then `ended PID CODE` (CODE as Popen gives it:
negative for a signal). One child at a time: a task process runs one job at a time.

Safe to fork because the zygote only imports: it never runs a tensor operation (so no OpenMP or intra-op
thread pool exists yet; each child sets its own thread count) and never touches CUDA. Jobs that may use CUDA
keep a fresh process each (`forks_for`). Each child gets its own process group (the supervisor kills a job's
group), dies with the zygote (PR_SET_PDEATHSIG, which fork clears), which dies with its task process, and
inherits the zygote's niceness.
"""

import contextlib
import gc
import logging
import os
import select
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from app.core.settings import Settings

# Room in a zygote's or standby's argv for `workers.trainer JOB_ID LEASE_TOKEN` (show_in_command_line).
STANDBY_PLACEHOLDER = "_" * 160
log = logging.getLogger("nnforge.worker")


def forks_for(queue: str) -> bool:
    """Whether a job of `queue` trains in a child of the zygote: not where it may use CUDA (the gpu queue,
    and the any queue on a machine with an NVIDIA device), which keeps a fresh process per job."""
    if queue == "cpu":
        return True
    return queue != "gpu" and not any(Path("/dev").glob("nvidia[0-9]*"))


class ForkServer:
    """The task process's handle on its zygote."""

    def __init__(self) -> None:
        read, write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.zygote", str(write), STANDBY_PLACEHOLDER],
            stdin=subprocess.PIPE,
            pass_fds=(write,),
            start_new_session=True,  # its own process group: a terminal's Ctrl-C is ours
        )
        os.close(write)
        self.reports = _LineReader(read)

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, line: str) -> "ForkedTrainer | None":
        """Hand the line ("QUEUE TOKEN JOB_ID") to a new child; None when the zygote is gone. Waits for the
        zygote's imports when it has only just started."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(f"{line}\n".encode())
            self.process.stdin.flush()
        except OSError:  # it died
            return None
        report = self.reports.readline(None)
        if report is None:
            return None
        return ForkedTrainer(int(report.removeprefix("started ")), self.reports)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.reports.close()


class ForkedTrainer:
    """A child of the zygote, waited on as a Popen is (its exit code comes from the zygote)."""

    def __init__(self, pid: int, reports: "_LineReader") -> None:
        self.pid, self.reports = pid, reports
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            report = self.reports.readline(timeout)
            if report == "":
                raise subprocess.TimeoutExpired(f"training process {self.pid}", timeout or 0)
            # No report: the zygote died, and the child with it (PR_SET_PDEATHSIG).
            self.returncode = -signal.SIGKILL if report is None else int(report.rsplit(" ", 1)[1])
        return self.returncode


class _LineReader:
    """Lines from a pipe with a timeout: readline gives the line, "" on timeout, None at end of input."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""

    def readline(self, timeout: float | None) -> str | None:
        while b"\n" not in self.buffer:
            if not select.select([self.fd], [], [], timeout)[0]:
                return ""
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        os.close(self.fd)


def serve(report_fd: int, settings: Settings) -> int:
    """The zygote's life: import once, then fork a training process per line on stdin until its end."""
    from workers.trainer import die_with_parent, preload

    die_with_parent()
    preload(settings)
    gc.freeze()  # the imported objects stay out of the children's collections: their pages stay shared
    zygote = os.getpid()
    while line := sys.stdin.buffer.readline():
        words = line.decode().split()
        if len(words) != 3:
            continue
        pid = os.fork()
        if pid == 0:
            _child(words, report_fd, zygote)
        with contextlib.suppress(OSError):  # it has already exited
            os.setpgid(pid, pid)  # as the child does itself: whichever runs first, no window without it
        os.write(report_fd, f"started {pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        os.write(report_fd, f"ended {pid} {os.waitstatus_to_exitcode(status)}\n".encode())
    return 0


def _child(words: list[str], report_fd: int, zygote: int) -> None:
    """A forked training process: never returns into the zygote's loop."""
    code = 1
    try:
        os.setpgid(0, 0)
        from workers.trainer import die_with_parent, main

        die_with_parent()
        if os.getppid() != zygote:  # the zygote died before the line above
            os._exit(1)
        os.close(report_fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the zygote's commands are not ours to read
        os.close(devnull)
        code = main(*words)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # skip tearing down torch's modules, and never return into the zygote


if __name__ == "__main__":
    from app.core.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.nice(get_settings().trainer_nice)  # inherited by every child: the API and the database come first
    code = serve(int(sys.argv[1]), get_settings())
    logging.shutdown()
    os._exit(code)
