"""Request bodies are capped before they are read: a declared Content-Length over the cap is refused at
once, and a body that streams past it (chunked, or lying about its length) is cut off with 413."""

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.limits import MAX_UPLOAD_BYTES

MAX_JSON_BODY_BYTES = 1024 * 1024  # a job spec is a few kilobytes
MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries, part headers and form fields around an upload


def default_cap(path: str) -> int:
    return (
        MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES
        if path.startswith("/v1/datasets")
        else MAX_JSON_BODY_BYTES
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, cap_for: Callable[[str], int] = default_cap) -> None:
        self.app, self.cap_for = app, cap_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await _refuse(send, cap)
            return
        seen, responded, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal seen, responded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    # Answer now and tell the app the client left, so it stops reading and its own error
                    # response (if it sends one) is dropped.
                    if not started and not responded:
                        await _refuse(send, cap)
                    responded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if responded:
                return
            started |= message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, guarded_send)


async def _refuse(send: Send, cap: int) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Payload too large",
            "status": 413,
            "detail": f"the request body is limited to {cap:,} bytes",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
