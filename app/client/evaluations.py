"""A job's evaluations from the client side: ask for one, wait for it to end (the client's `job.evaluate`
and `nnforge evaluate`)."""

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.client.client import Client

ENDED = ("succeeded", "failed")


def request_evaluation(
    client: "Client",
    job_id: str,
    kind: str,
    *,
    checkpoint: str = "best",
    split: str = "test",
    params: dict[str, Any] | None = None,
    wait: bool = True,
    timeout: float = 900.0,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """POST the evaluation; with `wait`, poll it until it ends (TimeoutError past `timeout`)."""
    body = {"kind": kind, "checkpoint": checkpoint, "split": split, "params": params or {}}
    evaluation: dict[str, Any] = client.request("POST", f"/v1/jobs/{job_id}/evaluations", json=body).json()
    deadline = time.monotonic() + timeout
    while wait and evaluation["status"] not in ENDED:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"evaluation {evaluation['id']} still {evaluation['status']} after {timeout} s"
            )
        time.sleep(poll_seconds)
        evaluation = client.request("GET", f"/v1/jobs/{job_id}/evaluations/{evaluation['id']}").json()
    return evaluation
