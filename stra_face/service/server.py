"""uvicorn's HTTP/1.1 protocol with a deadline on request headers and the framing rules of RFC 9112.

uvicorn times out idle keep-alive connections (`timeout_keep_alive`) but resets that timer on
every byte, so a client that sends its headers one byte at a time holds a connection forever.
Here the headers of each request must be complete within `header_timeout_s` of their first byte
(or of the connection opening); the body has its own deadline (`RequestGuardMiddleware`).

h11 bounds a request head only while it is incomplete, accepts any HTTP/x.y version, and takes a
request with both Content-Length and Transfer-Encoding. `vet_head` refuses, for every complete
head: a version other than 1.0/1.1 (505), a target over `MAX_TARGET_BYTES` (414), more than
`MAX_HEADERS` headers or a head over `MAX_HEAD_BYTES` (431), both framing headers (400, a request
smuggling vector, RFC 9112 §6.1). Every refusal, h11's own included, answers the API's JSON error
shape and closes the connection. A chunk that declares more bytes than any route accepts is
refused (413) when its size line arrives, instead of waiting for the bytes.
"""

from __future__ import annotations

import asyncio
import ctypes

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from stra_face.service.limits import largest_body
from stra_face.service.middleware import json_error
from stra_face.service.settings import Settings

MAX_HEAD_BYTES = 16 * 1024
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADERS = 100


def vet_head(request: h11.Request) -> tuple[int, str, str] | None:
    """(status, code, message) refusing a request head, or None."""
    if request.http_version not in (b"1.0", b"1.1"):
        return 505, "http_version_not_supported", f"HTTP/{request.http_version.decode()} is not supported; use HTTP/1.1"
    if len(request.target) > MAX_TARGET_BYTES:
        return 414, "uri_too_long", f"the request target is {len(request.target)} bytes; at most {MAX_TARGET_BYTES}"
    size = (
        len(request.method)
        + len(request.target)
        + 12
        + sum(len(name) + len(value) + 4 for name, value in request.headers)
    )
    if len(request.headers) > MAX_HEADERS or size > MAX_HEAD_BYTES:
        return (
            431,
            "headers_too_large",
            f"the request head has {len(request.headers)} headers, ~{size} bytes; "
            f"at most {MAX_HEADERS} and {MAX_HEAD_BYTES}",
        )
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return 400, "bad_request", "the request has both Content-Length and Transfer-Encoding (RFC 9112 §6.1)"
    return None


class VettedConnection(h11.Connection):
    """h11's connection that refuses the request heads `vet_head` refuses and remembers why."""

    refusal: tuple[int, str, str] | None = None

    def next_event(self):
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            self.refusal = (
                error.error_status_hint,
                "bad_request" if error.error_status_hint == 400 else "headers_too_large",
                f"invalid HTTP request: {error}",
            )
            raise
        if isinstance(event, h11.Request) and (refusal := vet_head(event)):
            self.refusal = refusal
            raise h11.RemoteProtocolError(refusal[2], error_status_hint=refusal[0])
        return event


class TimedH11Protocol(H11Protocol):
    header_timeout_s: float = Settings().header_timeout_s  # read in each worker process (STRA_HEADER_TIMEOUT_S)
    max_chunk_bytes: int = largest_body(Settings())

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.conn = VettedConnection(h11.SERVER, MAX_HEAD_BYTES)  # also bounds a head that arrives in pieces
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to every malformed request: here with its real status and the JSON error shape."""
        status, code, message = self.conn.refusal or (400, "bad_request", msg)
        self._refuse(status, code, message)

    def _refuse(self, status: int, code: str, message: str) -> None:
        start, body = json_error(status, code, message, {"Connection": "close"})
        for event in (
            h11.Response(status_code=status, headers=start["headers"]),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _declared_chunk(self) -> int:
        """Bytes the chunk being read still declares (h11 keeps it private; 0 where it is not there)."""
        return getattr(getattr(self.conn, "_reader", None), "_bytes_in_chunk", 0)

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm_header_deadline()
        super().data_received(data)
        if (
            self._declared_chunk() > self.max_chunk_bytes
            and self.cycle
            and not self.cycle.response_started
            and not self.transport.is_closing()
        ):
            self.cycle.disconnected = True  # the app's receive() ends; anything it sends later is dropped
            self.cycle.message_event.set()
            self._refuse(
                413,
                "payload_too_large",
                f"a chunk declares {self._declared_chunk()} bytes; no route accepts more than {self.max_chunk_bytes}",
            )
            return
        if not self._waiting_for_headers():  # a request's headers are in: its body has its own deadline
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm_header_deadline()  # idle now: uvicorn's keep-alive timeout applies until the next byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int) -> bool:
    """glibc gives each thread that contends for malloc an arena of its own (up to 8 per core) and
    returns little of them to the system: under sustained load on the thread pool the server's RSS
    kept climbing (1.3 -> 2.6 GiB over four 20 s rounds) where with 2 arenas it levels off at ~1.5 GiB
    at the same throughput. Not a leak: fragmentation across arenas. No-op without glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
