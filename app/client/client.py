"""A small Python client for the nnforge API (what the CLI uses):

from nnforge import Client
client = Client()                       # URL and token: arguments, env, config file or `nnforge serve`
job = client.submit({"dataset": {"name": "digits"}, "model": {"arch": "cnn"}})
for event in job.stream():              # status, progress, metrics, end (server-sent events)
    ...
job.wait().status                       # 'succeeded'
job.download("cnn.onnx", format="onnx", checkpoint="best")
job.predict(x)["classes"]                # raw samples in; served by ONNX Runtime on the server
client.job("1d44").tag(add=["baseline"])  # a job by a unique prefix of its id; tags, notes and name by PATCH
client.jobs(tags=["baseline"], sort="-best.val_accuracy", limit=10)
client.sweep("sweep.yaml").wait().best()  # a search, one job per trial (app/client/sweeps.py)
"""

import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import httpx2

from app.client.client_config import resolve_config
from app.client.lineage import parse_from
from app.client.sse_parse import Event, parse_events
from app.client.sweeps import Sweep, read_sweep
from app.db.job_state import TERMINAL

Format = Literal["pt", "safetensors", "onnx"]
RECONNECT_SECONDS = 1.0
MAX_RECONNECTS = 30  # in a row without an event in between
ID_LENGTH = 36  # a job id in full; anything shorter is a prefix (at least 4 characters, as the API says)
PREFIX_MATCHES_SHOWN = 10


class _Unset(Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET  # Job.update: leave this field as it is


class NnforgeError(RuntimeError):
    """An error answer of the API (RFC 9457 problem details): `errors` name each field and reason."""

    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail, self.errors = status, title, detail, errors or []


class AmbiguousJobId(LookupError):
    """A job id prefix that more than one of your jobs starts with; `matches` are (the newest of) them."""

    def __init__(self, prefix: str, matches: list[str], more: bool) -> None:
        count = f"more than {len(matches)}" if more else str(len(matches))
        super().__init__(f"job id prefix {prefix} matches {count} jobs: {', '.join(matches)}")
        self.prefix, self.matches, self.more = prefix, matches, more


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        config = resolve_config(url, token)
        self.url = config.url
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self.http = httpx2.Client(base_url=config.url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        response = self.http.request(method, path, **kwargs)
        raise_for_problem(response)
        return response

    def submit(
        self,
        spec: dict[str, Any],
        *,
        name: str | None = None,
        tags: Iterable[str] = (),
        notes: str | None = None,
        priority: str | None = None,
        init_from: str | dict[str, Any] | None = None,
    ) -> "Job":
        """Queue a job; `priority` (low, normal, high) orders it among this owner's own queued jobs.
        `init_from` starts it from another job's checkpoint: "JOB[:best|latest|ID]" or init_from's mapping
        (load, freeze, optimizer_state, …)."""
        body = spec | ({"name": name} if name else {}) | ({"tags": list(tags)} if tags else {})
        body |= {"notes": notes} if notes is not None else {}
        body |= {"priority": priority} if priority is not None else {}
        if init_from is not None:
            body["init_from"] = parse_from(init_from) if isinstance(init_from, str) else dict(init_from)
        return Job(self, self.request("POST", "/v1/jobs", json=body).json())

    def job(self, job_id: str) -> "Job":
        """A job by its id or by a unique prefix of it (at least 4 characters), as git and docker take them.
        NnforgeError 404 when no job matches, AmbiguousJobId when several do."""
        if len(job_id) >= ID_LENGTH:
            return Job(self, self.request("GET", f"/v1/jobs/{job_id}").json())
        params = {"id_prefix": job_id, "limit": PREFIX_MATCHES_SHOWN}
        page = self.request("GET", "/v1/jobs", params=params).json()
        if not page["items"]:
            raise NnforgeError(404, "Not found", f"no job id starts with {job_id}")
        matches = [item["id"] for item in page["items"]]
        if len(matches) > 1:
            raise AmbiguousJobId(job_id, matches, more=page["next_cursor"] is not None)
        return Job(self, page["items"][0])

    def resolve(self, job_id: str) -> str:
        """The full id of the job this id or unique prefix names (errors as for `job`)."""
        return job_id if len(job_id) >= ID_LENGTH else self.job(job_id).id

    def jobs(
        self,
        *,
        status: str | None = None,
        arch: str | None = None,
        tags: Iterable[str] = (),
        name: str | None = None,
        optimizer: str | None = None,
        dataset: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        sweep_id: str | None = None,
        sort: str | None = None,
        limit: int = 50,
    ) -> list["Job"]:
        """Up to `limit` jobs that pass every filter given (tags: all of them; name: a substring, any case;
        dataset: a built-in's name or an upload's id; sweep_id: a sweep's trials), following the API's
        cursor pages. `sort`: created, duration or best.METRIC, `-` first for descending; the default is
        newest first."""
        after, before = (
            t.isoformat() if isinstance(t, datetime) else t for t in (created_after, created_before)
        )
        filters: dict[str, Any] = {
            "status": status,
            "arch": arch,
            "tag": list(tags),
            "name": name,
            "optimizer": optimizer,
            "dataset": dataset,
            "created_after": after,
            "created_before": before,
            "sweep_id": sweep_id,
            "sort": sort,
        }
        found: list[Job] = []
        cursor: str | None = None
        while len(found) < limit:
            params = filters | {"limit": min(200, limit - len(found)), "cursor": cursor}
            page = self.request("GET", "/v1/jobs", params={k: v for k, v in params.items() if v}).json()
            found += [Job(self, item) for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return found

    def sweep(
        self,
        spec: dict[str, Any] | str | Path,
        *,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> Sweep:
        """Start a sweep from its body ({name, base, space, objective, trials, parallel, sampler, seed,
        pruner}) or a YAML/JSON file of it (`nnforge template --sweep`). With an idempotency key, a retried
        POST answers the sweep the first one started instead of starting another."""
        body = read_sweep(spec) | ({"name": name} if name else {})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Sweep(self, self.request("POST", "/v1/sweeps", json=body, headers=headers).json())

    def get_sweep(self, sweep_id: str) -> Sweep:
        return Sweep(self, self.request("GET", f"/v1/sweeps/{sweep_id}").json())

    def sweeps(self, *, limit: int = 50) -> list[Sweep]:
        """Your sweeps, newest first, up to `limit`, following the API's cursor pages."""
        found: list[Sweep] = []
        cursor: str | None = None
        while len(found) < limit:
            params = {"limit": min(200, limit - len(found))} | ({"cursor": cursor} if cursor else {})
            page = self.request("GET", "/v1/sweeps", params=params).json()
            found += [Sweep(self, item) for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return found[:limit]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/datasets/{dataset_id}").json()  # type: ignore[no-any-return]

    def download_dataset(self, dataset_id: str, folder: str | Path) -> tuple[Path, dict[str, Any]]:
        """An uploaded dataset's file, saved in `folder` under its original name, and what the service
        says of it (its label_column, classes, ...)."""
        info = self.dataset(dataset_id)
        target = Path(folder) / Path(info["filename"]).name
        target.write_bytes(self.request("GET", f"/v1/datasets/{dataset_id}/file").content)
        return target, info

    def datasets(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/datasets").json()["items"]  # type: ignore[no-any-return]

    def upload_dataset(
        self,
        path: str | Path,
        *,
        label_column: str | None = None,
        unlabelled: bool = False,
        name: str | None = None,
        description: str | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Upload a .npz or .csv; the same bytes uploaded before answer that dataset unless `force`."""
        path = Path(path)
        fields = {"label_column": label_column, "name": name, "description": description}
        data = {k: v for k, v in fields.items() if v is not None}
        data |= {k: "true" for k, v in {"unlabelled": unlabelled, "force": force}.items() if v}
        with path.open("rb") as handle:
            return self.request(
                "POST",
                "/v1/datasets",
                files={"file": (path.name, handle)},  # type: ignore[no-any-return]
                data=data,
            ).json()

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job and everything it stored; NnforgeError 409 while it is queued or running."""
        self.request("DELETE", f"/v1/jobs/{job_id}")

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete an upload; NnforgeError 409 while a queued or running job uses it."""
        self.request("DELETE", f"/v1/datasets/{dataset_id}")

    def usage(self) -> dict[str, Any]:
        """What you store: {owner, total_bytes, limit_bytes, jobs, checkpoints, metrics, logs, datasets},
        each kind as {count, bytes}."""
        return self.request("GET", "/v1/usage").json()  # type: ignore[no-any-return]


class Job:
    """A handle on one job; `data` is the API's last answer about it (JobPublic)."""

    def __init__(self, client: Client, data: dict[str, Any]) -> None:
        self.client, self.data, self.id = client, data, str(data["id"])

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        return str(self.data["status"])

    def refresh(self) -> "Job":
        self.data = self.client.request("GET", f"/v1/jobs/{self.id}").json()
        return self

    def cancel(self) -> "Job":
        self.data = self.client.request("POST", f"/v1/jobs/{self.id}/cancel").json()
        return self

    def evaluate(
        self,
        kind: str = "report",
        *,
        checkpoint: str = "best",
        split: str = "test",
        wait: bool = True,
        **params: Any,
    ) -> dict[str, Any]:
        """Evaluate a checkpoint: `report`, `robustness` (epsilons=[…], steps, samples, …) or `attribution`
        (samples, ig_steps); with `wait`, returns the evaluation once it ended, `result` included."""
        from app.client.evaluations import request_evaluation

        return request_evaluation(
            self.client, self.id, kind, checkpoint=checkpoint, split=split, params=params, wait=wait
        )

    def evaluations(self) -> list[dict[str, Any]]:
        return list(self.client.request("GET", f"/v1/jobs/{self.id}/evaluations").json()["items"])

    def lineage(self) -> dict[str, Any]:
        """The jobs it started from (init_from), its parent first, and those started from it."""
        return dict(self.client.request("GET", f"/v1/jobs/{self.id}/lineage").json())

    def update(
        self,
        *,
        name: str | _Unset | None = UNSET,
        notes: str | _Unset | None = UNSET,
        tags: Iterable[str] | _Unset = UNSET,
    ) -> "Job":
        """Change the fields given, in any status: None clears the name or the notes, `tags` replaces the
        set. Returns the handle with the job as it now is."""
        given = {"name": name, "notes": notes, "tags": UNSET if isinstance(tags, _Unset) else list(tags)}
        body = {field: value for field, value in given.items() if value is not UNSET}
        self.data = self.client.request("PATCH", f"/v1/jobs/{self.id}", json=body).json()
        return self

    def tag(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> "Job":
        """Add and remove tags (removals first), atomically on the server: a concurrent change is kept."""
        body = {"add_tags": list(add), "remove_tags": list(remove)}
        self.data = self.client.request("PATCH", f"/v1/jobs/{self.id}", json=body).json()
        return self

    def metrics(
        self, names: list[str] | None = None, *, max_points: int | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Series by name: [{step, epoch, value, time}, …]."""
        params: dict[str, Any] = {"name": names or [], **({"max_points": max_points} if max_points else {})}
        return self.client.request(
            "GET",
            f"/v1/jobs/{self.id}/metrics",  # type: ignore[no-any-return]
            params=params,
        ).json()["series"]

    def samples(self) -> dict[str, Any]:
        """A generative job's samples of its latest epoch: {epoch, kind, shape, samples, reference} in the
        dataset's units. NnforgeError 404 for networks that generate nothing and before the first epoch."""
        return self.client.request("GET", f"/v1/jobs/{self.id}/samples").json()  # type: ignore[no-any-return]

    def checkpoints(self) -> list[dict[str, Any]]:
        return self.client.request("GET", f"/v1/jobs/{self.id}/checkpoints").json()  # type: ignore[no-any-return]

    def predict(
        self,
        inputs: Any = None,
        *,
        n: int | None = None,
        seed: int | None = None,
        checkpoint: str = "best",
    ) -> dict[str, Any]:
        """The checkpoint's answers for raw `inputs` (a list or array of samples): {classes, probabilities,
        labels} for a classifier, {outputs} for regression; for a GAN, `n` samples from latent `seed`:
        {samples}. The first call for a checkpoint waits for its ONNX export (seconds)."""
        body: dict[str, Any] = {"checkpoint": checkpoint}
        if inputs is not None:
            body["inputs"] = inputs.tolist() if hasattr(inputs, "tolist") else inputs  # numpy arrays too
        body |= {k: v for k, v in {"n": n, "seed": seed}.items() if v is not None}
        return self.client.request("POST", f"/v1/jobs/{self.id}/predict", json=body).json()  # type: ignore[no-any-return]

    def delete_checkpoint(self, checkpoint_id: int) -> None:
        """Delete one checkpoint; NnforgeError 409 for the newest and the best epoch's, which stay."""
        self.client.request("DELETE", f"/v1/jobs/{self.id}/checkpoints/{checkpoint_id}")

    def delete(self) -> None:
        """Delete the job (finished: cancel a queued or running one first) and everything it stored."""
        self.client.delete_job(self.id)

    def logs(self, *, after: int = 0) -> dict[str, Any]:
        """{status, items: [{id, time, level, logger, message}], next_after}."""
        return self.client.request(
            "GET",
            f"/v1/jobs/{self.id}/logs",  # type: ignore[no-any-return]
            params={"after": after},
        ).json()

    def follow_logs(self, *, poll_seconds: float = 1.0) -> Iterator[dict[str, Any]]:
        """Every log line, then new ones as they are written, until the job is over."""
        after = 0
        while True:
            page = self.logs(after=after)
            yield from page["items"]
            after = page["next_after"]
            if page["status"] in TERMINAL and not page["items"]:
                return
            if not page["items"]:
                time.sleep(poll_seconds)

    def stream(self, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's server-sent events until `end` (included). A dropped connection is resumed from the
        last event id, so no metric point is lost or repeated."""
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                url = f"/v1/jobs/{self.id}/events"
                with self.client.http.stream("GET", url, headers=headers) as response:
                    if response.is_error:
                        response.read()
                        raise_for_problem(response)
                    for event in parse_events(response.iter_lines()):
                        failures, last_event_id = 0, event.id or last_event_id
                        if event.event == "status":
                            self.data = event.data
                        yield event
                        if event.event == "end":
                            return
            except httpx2.TransportError:  # the connection dropped: resume from the last id
                failures += 1
                if failures > MAX_RECONNECTS:
                    raise
            time.sleep(RECONNECT_SECONDS)

    def wait(self) -> "Job":
        """Block until the job is over; returns the handle with its final state."""
        for _ in self.stream():
            pass
        return self.refresh()

    def download(
        self, path: str | Path | None = None, *, format: Format = "pt", checkpoint: str = "best"
    ) -> Path:
        """Save a checkpoint (`best`, `latest` or an id) as .pt, safetensors or ONNX. `path` may be a file,
        a folder, or None for the server's file name in the current folder."""
        url = f"/v1/jobs/{self.id}/checkpoints/{checkpoint}"
        with self.client.http.stream("GET", url, params={"format": format}) as response:
            if response.is_error:
                response.read()
                raise_for_problem(response)
            target = _target_path(
                path, response.headers.get("content-disposition", ""), f"{self.id}.{format}"
            )
            partial = target.with_name(target.name + ".partial")
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        partial.replace(target)  # a reader never sees half a file
        return target


def _target_path(path: str | Path | None, disposition: str, fallback: str) -> Path:
    match = re.search(r'filename="([^"/\\]+)"', disposition)
    name = match.group(1) if match else fallback
    if path is None:
        return Path(name)
    path = Path(path)
    return path / name if path.is_dir() else path


def raise_for_problem(response: httpx2.Response) -> None:
    if not response.is_error:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise NnforgeError(
        response.status_code,
        str(body.get("title", response.reason_phrase)),
        str(body.get("detail", response.text[:500])),
        body.get("errors"),
    )
