"""ASGI guards that hold for every route, whatever the handler does.

- `RequestGuardMiddleware`: the request body is bounded while it streams (Content-Length or
  chunked alike: bytes are counted as they arrive and the request answers 413 as soon as the
  limit is passed, before the rest is read), must arrive within `body_timeout_s` (408 otherwise),
  and a JSON body is refused (400) when nested deeper than `MAX_JSON_DEPTH`, before any parser
  recurses into it.
- `UnhandledErrorMiddleware`: an exception no handler expected answers a JSON 500 without a
  traceback, is logged and counted, and is not re-raised, so the server keeps the connection
  (Starlette's own error middleware re-raises, and uvicorn then drops the keep-alive connection).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable

import numpy as np
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("stra_face.errors")

MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays/objects in a JSON text (strings skipped); no recursion, C-speed scans."""
    structure = np.frombuffer(_JSON_STRING.sub(b'""', body), np.uint8)
    depth = deepest = 0
    for start in range(0, structure.size, 1 << 20):  # in blocks: a body of brackets stays a few MB of temporaries
        running = np.cumsum(_OPEN[structure[start:start + (1 << 20)]], dtype=np.int32) + depth
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def _json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> tuple[dict, bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, body


async def send_json_error(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    start, body = _json_error(status, code, message, headers)
    await send(start)
    await send({"type": "http.response.body", "body": body})


class _BodyRefused(HTTPException):
    """An HTTPException, so that handlers that wrap body parsing (FastAPI's) pass it through to the error handler."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, message, {"Connection": "close"})
        self.status, self.code, self.message = status, code, message


class RequestGuardMiddleware:
    """Body size limit (per route), body read deadline and JSON nesting limit.

    `limit_for(scope)` gives the byte limit of a request; the app's image routes allow their
    images, everything else a small JSON body (see `stra_face.service.limits.body_limit`).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int], body_timeout_s: float, max_json_depth: int = MAX_JSON_DEPTH):
        self.app = app
        self.limit_for = limit_for
        self.body_timeout_s = body_timeout_s
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        headers = dict(scope["headers"])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0  # h11 refuses a malformed Content-Length before we get here
        if declared > limit:
            await send_json_error(send, 413, "payload_too_large", f"the request body is {declared} bytes; this route accepts at most {limit}", {"Connection": "close"})
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        deadline = time.monotonic() + self.body_timeout_s
        received = 0
        started = complete = False

        async def guarded_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: later receives only wait for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise _BodyRefused(408, "request_timeout", f"the request body did not arrive within {self.body_timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyRefused(413, "payload_too_large", f"the request body is over {limit} bytes, the most this route accepts")
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        app_receive = guarded_receive
        try:
            if content_type in (b"", b"application/json") or content_type.endswith(b"+json"):  # FastAPI parses a body without a type as JSON
                app_receive = await self._checked_json(guarded_receive)
            await self.app(scope, app_receive, tracking_send)
        except _BodyRefused as refused:
            if started:
                raise
            await send_json_error(send, refused.status, refused.code, refused.message, {"Connection": "close"})

    async def _checked_json(self, receive: Receive) -> Receive:
        """Reads the (size-bounded) JSON body, refuses it when too deep, and replays it to the app."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message])
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        depth = json_depth(body)
        if depth > self.max_json_depth:
            raise _BodyRefused(400, "invalid_json", f"the JSON body is nested {depth} levels deep; at most {self.max_json_depth} are accepted")
        return _replay([{"type": "http.request", "body": body, "more_body": False}], then=receive)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


class UnhandledErrorMiddleware:
    """Answers a JSON 500 for an unexpected exception, counts it, and keeps the connection usable."""

    def __init__(self, app: ASGIApp, count: Callable[[Scope, BaseException], None]):
        self.app = app
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:  # the last line of defence: log it, count it, answer JSON
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            self.count(scope, error)
            if started:
                raise  # half a response is out: only closing the connection tells the client
            await send_json_error(send, 500, "internal_error", "internal server error (logged on the server)")

