"""The live routes against a real PostgreSQL: the event stream (ids, resume, keep-alives, end) and the job
log, with the rows written the way the worker writes them."""

import json
import logging
import uuid
import warnings
from collections.abc import Iterator

import pytest
from conftest import new_token
from fastapi.testclient import TestClient
from sqlalchemy import insert, update

from app.api.job_events import StreamTiming
from app.api.main import create_app
from app.core.settings import Settings
from app.db.base import utcnow
from app.db.tables import Job, Metric
from workers.job_log import JobLogHandler, job_log

MOONS = {
    "dataset": {"name": "moons"},
    "model": {"arch": "mlp", "hidden_sizes": [4]},
    "training": {"epochs": 3},
}


def _events(lines: Iterator[str]) -> Iterator[dict]:
    """Parse a text/event-stream into {event, id, data, comment} dicts."""
    event: dict = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            event["comment"] = value
        elif field == "data":
            event["data"] = json.loads(value)
        else:
            event[field] = value


def _submit(client: TestClient) -> str:
    response = client.post("/v1/jobs", json=MOONS)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _write_metrics(client: TestClient, job_id: str, steps: range) -> None:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        session.execute(
            insert(Metric),
            [
                {"job_id": job_id, "name": "loss", "step": s, "epoch": 1, "value": 1.0 / s, "time": utcnow()}
                for s in steps
            ],
        )
        session.commit()


def _set_job(client: TestClient, job_id: str, **values: object) -> None:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()


@pytest.fixture(scope="module")
def live(api_settings: Settings) -> Iterator[TestClient]:
    app = create_app(api_settings)
    app.state.event_timing = StreamTiming(poll_seconds=0.05, keepalive_seconds=0.2)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {new_token(api_settings, f'live-{uuid.uuid4().hex[:6]}')}"
        yield client


def test_events_stream_status_progress_metrics_then_end_and_close(live: TestClient) -> None:
    job_id = _submit(live)
    _set_job(live, job_id, status="running", step=3, epoch=1)
    _write_metrics(live, job_id, range(1, 4))
    with live.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = _events(response.iter_lines())
        assert next(stream)["retry"] == "2000"
        status = next(stream)
        assert (status["event"], status["data"]["status"], status["id"]) == ("status", "running", "0")
        progress = next(stream)
        assert progress["event"] == "progress" and progress["data"]["progress"]["step"] == 3
        metrics = next(stream)
        assert metrics["event"] == "metrics"
        assert [p["step"] for p in metrics["data"]["points"]] == [1, 2, 3]
        first_id = int(metrics["id"])

        # The worker writes more and finishes: the stream sends the rows, the new status and `end`.
        _write_metrics(live, job_id, range(4, 6))
        _set_job(live, job_id, status="succeeded", step=5, finished_at=utcnow())
        rest = [e for e in stream if "comment" not in e]
    kinds = [e["event"] for e in rest]
    assert kinds[-1] == "end" and rest[-1]["data"] == {"status": "succeeded", "error": None}
    sent_later = [p["step"] for e in rest if e["event"] == "metrics" for p in e["data"]["points"]]
    assert sent_later == [4, 5]
    assert "status" in kinds and int(rest[-1]["id"]) > first_id

    # Resuming from the first metrics event replays the snapshots and only the rows after it.
    with live.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(first_id)}) as again:
        resumed = [e for e in _events(again.iter_lines()) if "event" in e]
    assert [e["event"] for e in resumed] == ["status", "progress", "metrics", "end"]
    assert [p["step"] for p in resumed[2]["data"]["points"]] == [4, 5]


def test_events_send_keepalive_comments_while_the_job_is_quiet(live: TestClient) -> None:
    job_id = _submit(live)
    with live.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        stream = _events(response.iter_lines())
        seen = [next(stream) for _ in range(4)]
    assert [e.get("event") for e in seen[1:3]] == ["status", "progress"]
    assert seen[3] == {"comment": "keep-alive"}


def test_events_and_logs_of_another_owner_are_404(live: TestClient, api_settings: Settings) -> None:
    job_id = _submit(live)
    stranger = {"Authorization": f"Bearer {new_token(api_settings, 'stranger')}"}
    assert live.get(f"/v1/jobs/{job_id}/events", headers=stranger).status_code == 404
    assert live.get(f"/v1/jobs/{job_id}/logs", headers=stranger).status_code == 404
    assert live.get("/v1/jobs/nope/events").status_code == 404


def test_events_refuse_a_malformed_last_event_id(live: TestClient) -> None:
    response = live.get(f"/v1/jobs/{_submit(live)}/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "Last-Event-ID" in response.json()["detail"] or "last-event-id" in response.json()["detail"]


def test_job_log_handler_stores_lines_warnings_and_tracebacks_served_in_order(live: TestClient) -> None:
    job_id = _submit(live)
    factory = live.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session:  # as its first claim would: lines are kept only for the latest attempt
        session.execute(update(Job).where(Job.id == job_id).values(attempt=1))
        session.commit()
    outside = logging.getLogger("elsewhere")
    with job_log(factory, job_id, 1, "auto"):
        logging.getLogger("nnforge.worker").info("job %s epoch 1/3 loss=0.5", job_id)
        outside.warning("not a line of the job")
        warnings.warn("a user warning", UserWarning, stacklevel=1)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("nnforge.worker").exception("job %s failed", job_id)
    lines = live.get(f"/v1/jobs/{job_id}/logs").json()
    messages = [line["message"] for line in lines["items"]]
    assert "training process" in messages[0] and "cpu" in messages[0]
    assert messages[1] == f"job {job_id} epoch 1/3 loss=0.5"
    assert "a user warning" in messages[2] and lines["items"][2]["level"] == "WARNING"
    assert messages[3].startswith(f"job {job_id} failed") and "ValueError: boom" in messages[3]
    assert "Traceback" in messages[3] and len(messages) == 4
    assert {line["attempt"] for line in lines["items"]} == {1}

    newer = live.get(f"/v1/jobs/{job_id}/logs", params={"after": lines["items"][1]["id"]}).json()
    assert [line["message"] for line in newer["items"]] == messages[2:]
    assert newer["next_after"] == lines["next_after"] == lines["items"][-1]["id"]
    assert live.get(f"/v1/jobs/{job_id}/logs", params={"after": -1}).status_code == 422


def test_job_log_handler_keeps_lines_while_the_database_is_down(
    live: TestClient, api_settings: Settings
) -> None:
    from sqlalchemy.orm import sessionmaker
    from support import free_port

    from app.db.engine import make_engine

    dead = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    handler = JobLogHandler(sessionmaker(dead), _submit(live), 1, flush_seconds=3600)
    handler.emit(logging.makeLogRecord({"name": "nnforge.worker", "levelname": "INFO", "msg": "kept"}))
    handler.flush()  # fails: the line must stay buffered, not vanish and not raise
    assert [row["message"] for row in handler.rows] == ["kept"]
    handler.stopping.set()
    handler.thread.join()
