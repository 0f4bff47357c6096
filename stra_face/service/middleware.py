"""ASGI guards that hold for every route, whatever the handler does.

- `RequestGuardMiddleware`: the request body is bounded while it streams (Content-Length or
  chunked alike: bytes are counted as they arrive and the request answers 413 as soon as the
  limit is passed, before the rest is read), must arrive within `body_timeout_s` (408 otherwise),
  a request with two Content-Type headers is refused (400), and a JSON body is refused when not
  UTF-8 (415) or nested deeper than `MAX_JSON_DEPTH` (400), before any parser recurses into it.
- `ApiKeyMiddleware`: the API key is checked before any of the body is read.
- `HeadAsGetMiddleware`: HEAD on every GET route.
- `RelativeRedirectMiddleware`: a redirect's Location is a path, never built from the Host header.
- `UnhandledErrorMiddleware`: an exception no handler expected answers a JSON 500 without a
  traceback, is logged and counted, and is not re-raised, so the server keeps the connection
  (Starlette's own error middleware re-raises, and uvicorn then drops the keep-alive connection).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
import numpy as np
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("stra_face.errors")

MAX_JSON_DEPTH = 32
OFFLOAD_BYTES = 64 * 1024  # bodies over this are scanned on a worker thread, not the event loop
_DEPTH_STEP = np.zeros(256, np.int8)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def json_depth(body: bytes, block: int = 1 << 18) -> int:
    """Deepest nesting of arrays/objects in a UTF-8 JSON text, brackets inside strings skipped.

    One linear pass of vectorised steps, block by block (no regex, no recursion; ~2 MB of
    temporaries whatever the body's size, about 40 ms per MB): a quote is escaped when an odd run
    of backslashes precedes it; the unescaped quotes toggle "inside a string"; the brackets
    outside strings are summed. UTF-8 never puts an
    ASCII byte inside a multi-byte character, so scanning bytes is scanning what the parser parses."""
    deepest = depth = quotes_so_far = backslashes = 0  # carried from block to block
    for start in range(0, len(body), block):
        data = np.frombuffer(body, np.uint8, count=min(block, len(body) - start), offset=start)
        index = np.arange(data.size, dtype=np.int32)
        # Start of the backslash run ending at each byte (a run carried in from the last block sits before 0).
        last_plain = np.maximum.accumulate(np.where(data != _BACKSLASH, index, np.int32(-1 - backslashes)))
        run_before = np.empty(data.size, np.int32)
        run_before[0] = backslashes
        run_before[1:] = index[:-1] - last_plain[:-1]
        quotes = (data == _QUOTE) & (run_before % 2 == 0)
        quotes_before = np.cumsum(quotes, dtype=np.int32) - quotes + quotes_so_far
        outside = (quotes_before % 2 == 0) & ~quotes  # a closing quote has an odd count before it
        running = np.cumsum(np.where(outside, _DEPTH_STEP[data], 0), dtype=np.int32) + depth
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
        quotes_so_far += int(quotes.sum())
        backslashes = int(data.size - 1 - last_plain[-1])
    return deepest


def is_json(content_type: bytes) -> bool:
    """What FastAPI parses as JSON: no Content-Type, application/json or application/*+json (parsed
    as it parses them: latin-1 text, str.strip(), which also strips non-ASCII spaces)."""
    media = content_type.decode("latin-1").split(";")[0].strip().lower()
    return media in ("", "application/json") or (
        media.startswith("application/") and media.endswith("+json") and media.count("/") == 1
    )


def json_refusal(body: bytes, max_depth: int) -> tuple[int, str, str] | None:
    """(status, code, message) refusing a JSON body before any parser sees it, or None."""
    encoding = json.detect_encoding(body)
    if encoding not in ("utf-8", "utf-8-sig"):  # RFC 8259: JSON between systems is UTF-8 (and the scan reads bytes)
        return 415, "unsupported_media_type", f"the JSON body is {encoding}; send it as UTF-8"
    depth = json_depth(body)
    if depth > max_depth:
        return 400, "invalid_json", f"the JSON body is nested {depth} levels deep; at most {max_depth} are accepted"
    return None


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> tuple[dict, bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, body


async def send_json_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    start, body = json_error(status, code, message, headers)
    await send(start)
    await send({"type": "http.response.body", "body": body})


class _BodyRefused(HTTPException):
    """FastAPI's HTTPException, which its body parsing passes through (to the error handler) instead of wrapping."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, message, {"Connection": "close"})
        self.status, self.code, self.message = status, code, message


class RequestGuardMiddleware:
    """Body size limit (per route), body read deadline, one Content-Type, and the JSON checks.

    `limit_for(scope)` gives the byte limit of a request; the app's image routes allow their
    images, everything else a small JSON body (see `stra_face.service.limits.body_limit`).
    Nothing is read here before the app asks for the body, so the checks that answer without it
    (API key, admission) still do so before a byte of it is read (and before `100 Continue`).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[Scope], int],
        body_timeout_s: float,
        max_json_depth: int = MAX_JSON_DEPTH,
    ):
        self.app = app
        self.limit_for = limit_for
        self.body_timeout_s = body_timeout_s
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        content_types = [value for name, value in scope["headers"] if name == b"content-type"]
        if len(content_types) > 1:  # parsers disagree on which one counts: refuse rather than guess
            await send_json_error(
                send, 400, "bad_request", "the request has more than one Content-Type header", {"Connection": "close"}
            )
            return
        headers = dict(scope["headers"])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0  # h11 refuses a malformed Content-Length before we get here
        if declared > limit:
            await send_json_error(
                send,
                413,
                "payload_too_large",
                f"the request body is {declared} bytes; this route accepts at most {limit}",
                {"Connection": "close"},
            )
            return
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
                raise _BodyRefused(
                    408, "request_timeout", f"the request body did not arrive within {self.body_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyRefused(
                        413, "payload_too_large", f"the request body is over {limit} bytes, the most this route accepts"
                    )
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        app_receive = (
            self._checked_json(guarded_receive)
            if is_json(content_types[0] if content_types else b"")
            else guarded_receive
        )
        try:
            await self.app(scope, app_receive, tracking_send)
        except _BodyRefused as refused:
            if started:
                raise
            await send_json_error(send, refused.status, refused.code, refused.message, {"Connection": "close"})

    def _checked_json(self, receive: Receive) -> Receive:
        """On the app's first read: the whole (size-bounded) JSON body, checked before any parser sees it."""
        checked = False

        async def checked_receive() -> Message:
            nonlocal checked
            if checked:
                return await receive()
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            checked = True
            body = b"".join(chunks)
            scan = functools.partial(json_refusal, body, self.max_json_depth)
            refusal = await anyio.to_thread.run_sync(scan) if len(body) > OFFLOAD_BYTES else scan()
            if refusal:
                raise _BodyRefused(*refusal)
            return {"type": "http.request", "body": body, "more_body": False}

        return checked_receive


class ApiKeyMiddleware:
    """API keys checked before the route reads a byte of the body (FastAPI reads a JSON body before
    it resolves dependencies): 401 without a key, 403 with a wrong one. `needs_key(scope)` says
    which requests must carry one (the routes that declare the x-api-key security scheme)."""

    def __init__(self, app: ASGIApp, keys: list[str], needs_key: Callable[[Scope], bool]):
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.needs_key = needs_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys and self.needs_key(scope):
            given = [value for name, value in scope["headers"] if name == b"x-api-key"]
            if not given:
                await send_json_error(
                    send,
                    401,
                    "missing_api_key",
                    "this server requires an API key in the x-api-key header",
                    {"WWW-Authenticate": "x-api-key"},
                )
                return
            if len(given) > 1 or not any(secrets.compare_digest(given[0], key) for key in self.keys):
                await send_json_error(send, 403, "invalid_api_key", "the API key is not valid")
                return
        await self.app(scope, receive, send)


class HeadAsGetMiddleware:
    """HEAD is answered as GET without the body (RFC 9110 §9.3.2) on every route that has GET:
    FastAPI's routes list only the methods they declare, while `Allow` and probes expect HEAD."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        scope["method"] = "GET"  # in place: the metrics middleware outside reads the matched route from this scope
        await self.app(scope, receive, headers_only)


def _path_only(location: bytes) -> bytes:
    """An absolute Location reduced to its path and query; leading slashes collapsed so that it can
    never become a scheme-relative URL ("//evil.example") either."""
    parts = urlsplit(location.decode("latin-1"))
    return urlunsplit(("", "", "/" + parts.path.lstrip("/"), parts.query, "")).encode("latin-1")


class RelativeRedirectMiddleware:
    """Redirects (Starlette's trailing-slash one) name a path on this server, never a host: Starlette
    builds an absolute URL from the client's Host header, so any client could choose where it points."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def relative_location(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = [
                    (name, _path_only(value) if name == b"location" else value)
                    for name, value in message.get("headers", [])
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, relative_location)


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
