"""Read timeouts uvicorn lacks. It closes an idle kept-alive connection (`timeout_keep_alive`) but, once a
request has begun, waits for the rest of its headers and body for as long as the client likes: a client
that sends a byte now and then holds a connection, and a place under `limit_concurrency`, forever.

This protocol (uvicorn's httptools protocol with two clocks) closes such a connection:
- headers: the request line and headers must all arrive within `header_seconds`, counted from the
  connection's start, or on a kept-alive connection from the next request's first byte;
- body: no silence longer than `body_seconds`, and after its first `body_seconds` the body must average
  `body_min_bytes_per_second` (a byte now and then does not keep it alive). While the application is not
  reading (uvicorn pauses reads when 64 KiB wait unread, or the client waits for `100 Continue`) the
  client cannot be behind, and the body's clocks start again.

A client that has sent part of a request gets a 408 (`Connection: close`) when an answer is still possible
— no response started on that connection — and is then cut off; a connection that sent nothing is closed
silently. The application sees a disconnect."""

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("nnforge.api")


@dataclass(frozen=True)
class ReadTimeouts:
    header_seconds: float
    body_seconds: float
    body_min_bytes_per_second: float


def guarded_protocol(timeouts: ReadTimeouts) -> type["GuardedHttpToolsProtocol"]:
    """The protocol class to give uvicorn (`Config(http=...)`), with these timeouts."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"timeouts": timeouts})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    timeouts: ClassVar[ReadTimeouts]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._partial = False  # part of a request line or headers has arrived
        self._body_start = self._body_last = 0.0
        self._body_bytes = 0

    # ------------------------------------------------------------------------------ uvicorn's hooks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.timeouts.header_seconds, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._partial = True
        if self._timer is None:  # the next request on a kept-alive connection
            self._arm(self.timeouts.header_seconds, self._headers_late)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._partial = False
        super().on_headers_complete()
        self._restart_body_clocks()
        self._arm(self.timeouts.body_seconds, self._check_body)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._body_bytes += len(body)
        self._body_last = self.loop.time()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # ------------------------------------------------------------------------------ the clocks
    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _restart_body_clocks(self) -> None:
        self._body_start = self._body_last = self.loop.time()
        self._body_bytes = 0

    def _headers_late(self) -> None:
        self._timer = None
        # An answer may go out only when no response is under way on this connection (a pipelined request).
        can_answer = self._partial and (self.cycle is None or self.cycle.response_complete)
        self._cut_off("headers", self.timeouts.header_seconds, answer=can_answer)

    def _check_body(self) -> None:
        self._timer = None
        now = self.loop.time()
        if self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue):
            self._restart_body_clocks()  # the application is not reading: the client cannot be behind
        t = self.timeouts
        deadline = min(
            self._body_last + t.body_seconds,
            self._body_start + t.body_seconds + self._body_bytes / t.body_min_bytes_per_second,
        )
        if now < deadline:
            self._arm(deadline - now, self._check_body)
            return
        cycle = self.cycle
        self._cut_off("body", t.body_seconds, answer=cycle is not None and not cycle.response_started)
        if cycle is not None:
            cycle.disconnected = True  # the application's receive() says so; whatever it sends is dropped
            cycle.message_event.set()

    def _cut_off(self, part: str, seconds: float, *, answer: bool) -> None:
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("closing the connection of %s: request %s too slow (bound %g s)", client, part, seconds)
        if answer:
            self.transport.write(_timeout_response(part, seconds, self.server_state.default_headers))
        self.transport.close()


def _timeout_response(part: str, seconds: float, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    detail = (
        f"the request's headers did not arrive within {seconds:g} s"
        if part == "headers"
        else f"the request body stalled for {seconds:g} s or fell below the minimum rate"
    )
    body = json.dumps({"type": "about:blank", "title": "Request timeout", "status": 408, "detail": detail})
    lines = [b"HTTP/1.1 408 Request Timeout"]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/problem+json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body.encode()
