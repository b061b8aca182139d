"""Sweeps from the Python client: a search over a job spec, one job per trial, run by the service.

sweep = client.sweep("sweep.yaml")      # or a dict: {name, base, space, objective, trials, ...}
sweep.wait().status                     # 'succeeded' once every trial has ended
sweep.best()                            # {number, job_id, value, params}
sweep.trials(sort="-value")             # [{number, job_id, params, state, value, epochs_run}, ...]
sweep.best_spec()                       # the job spec that won, ready for client.submit()
"""

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.client.spec_files import read_spec_file

if TYPE_CHECKING:
    from app.client.client import Client, Job

SWEEP_TERMINAL = ("succeeded", "failed", "cancelled")
TrialSort = Literal["number", "value", "-value"]


def read_sweep(spec: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A sweep's body from a mapping, or from a YAML or JSON file (SpecError names what is wrong with it)."""
    if isinstance(spec, Mapping):
        return dict(spec)
    return read_spec_file(Path(spec))


class Sweep:
    """A handle on one sweep; `data` is the API's last answer about it."""

    def __init__(self, client: "Client", data: dict[str, Any]) -> None:
        self.client, self.data, self.id = client, data, str(data["id"])

    def __repr__(self) -> str:
        return f"Sweep({self.id!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def done(self) -> bool:
        return self.status in SWEEP_TERMINAL

    def refresh(self) -> "Sweep":
        self.data = self.client.request("GET", f"/v1/sweeps/{self.id}").json()
        return self

    def trials(self, sort: TrialSort = "number") -> list[dict[str, Any]]:
        """Every trial so far; `value` is the objective (None until a trial reports it)."""
        page = self.client.request("GET", f"/v1/sweeps/{self.id}/trials", params={"sort": sort}).json()
        return page["items"]  # type: ignore[no-any-return]

    def best(self) -> dict[str, Any] | None:
        """The best complete trial so far ({number, job_id, value, params}), None before any completes."""
        return self.refresh().data.get("best")  # type: ignore[no-any-return]

    def best_spec(self) -> dict[str, Any] | None:
        """The winning trial's whole job spec: the base with its parameters applied."""
        return self.refresh().data.get("best_spec")  # type: ignore[no-any-return]

    def jobs(self, limit: int = 1000) -> list["Job"]:
        """The trials' jobs (newest first), for their metrics, logs and checkpoints."""
        return self.client.jobs(sweep_id=self.id, limit=limit)

    def cancel(self) -> "Sweep":
        """Stop the search: queued trials end at once, running ones within a step."""
        self.data = self.client.request("POST", f"/v1/sweeps/{self.id}/cancel").json()
        return self

    def wait(self, *, poll_seconds: float = 1.0, timeout: float | None = None) -> "Sweep":
        """Block until the sweep ends (TimeoutError after `timeout` seconds); returns the handle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {self.id} still {self.status} after {timeout} s")
            time.sleep(poll_seconds)
        return self
