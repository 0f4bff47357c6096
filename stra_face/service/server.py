"""uvicorn's HTTP/1.1 protocol with a deadline on request headers.

uvicorn times out idle keep-alive connections (`timeout_keep_alive`) but resets that timer on
every byte, so a client that sends its headers one byte at a time holds a connection forever.
Here the headers of each request must be complete within `header_timeout_s` of their first byte
(or of the connection opening); the body has its own deadline (`RequestGuardMiddleware`).
"""
from __future__ import annotations

import asyncio
import ctypes

from uvicorn.protocols.http.h11_impl import H11Protocol

from stra_face.service.settings import Settings


class TimedH11Protocol(H11Protocol):
    header_timeout_s: float = Settings().header_timeout_s  # read in each worker process (STRA_HEADER_TIMEOUT_S)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

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
