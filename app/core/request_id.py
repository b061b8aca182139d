"""One request id from the API into the worker: read from (or set as) `X-Request-ID`, kept in a context
variable, sent as a Celery message header, set again in the task and inherited by the training process
through NNFORGE_REQUEST_ID. Every log record carries it as `request_id`; LOG_FORMAT=json prints them as
JSON lines."""

import json
import logging
import os
import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
ENV = "NNFORGE_REQUEST_ID"
VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a client's id is kept only when it is safe to log
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current() -> str | None:
    return request_id.get() or os.environ.get(ENV)


class RequestIdMiddleware:
    """Pure ASGI, so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER.lower().encode(), b"").decode("latin-1")
        rid = given if VALID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER.lower().encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging() -> None:
    """Give nnforge's loggers a handler that stamps the request id; JSON lines when LOG_FORMAT=json."""
    logger = logging.getLogger("nnforge")
    if any(isinstance(f, RequestIdFilter) for h in logger.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter()
        if os.environ.get("LOG_FORMAT") == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed once, here, not again by a root handler


def connect_celery_signals() -> None:
    """Publish side: put the id in the message headers. Task side: restore it for the task and for the
    training process it starts (environment variables are inherited)."""
    from celery.signals import before_task_publish, task_postrun, task_prerun

    def publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers is not None and (rid := current()):
            headers["request_id"] = rid

    def prerun(task: Any = None, **_: Any) -> None:
        rid = getattr(task.request, "request_id", None) if task is not None else None
        if rid:
            request_id.set(rid)
            os.environ[ENV] = rid

    def postrun(**_: Any) -> None:
        request_id.set(None)
        os.environ.pop(ENV, None)

    before_task_publish.connect(publish, weak=False, dispatch_uid="nnforge.request_id.publish")
    task_prerun.connect(prerun, weak=False, dispatch_uid="nnforge.request_id.prerun")
    task_postrun.connect(postrun, weak=False, dispatch_uid="nnforge.request_id.postrun")
