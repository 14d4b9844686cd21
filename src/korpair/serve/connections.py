"""Connection guards that uvicorn lacks: a header timeout, a connection limit that closes idle connections
first, a connection limit that fits the open-file limit, and one log line when accepting fails.

uvicorn (0.54) starts no timer on a new connection, and a keep-alive connection's timer stops at
the first byte of the next request: a client that sends ``GET /hea`` and nothing more holds its
connection, and a file descriptor, for ever. Its ``limit_concurrency`` counts such connections and
answers 503 to everyone else while they stay open.

The guards sit on uvicorn's httptools protocol (llhttp, in C) where ``httptools`` is installed, as it is
with korpair: it takes about 0.4 ms less of a request than the pure-Python h11 protocol, which is the
fallback.

Example::

    protocol = guarded_protocol(header_timeout_s=10, max_connections=fit_connection_limit(1000))
    uvicorn.Config(app, http=protocol)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 only
    HttpToolsProtocol = None

log = logging.getLogger(__name__)

# File descriptors kept free for everything but client connections: the model's files, logs, the listening
# socket, the pipes of the worker thread and of the tokenizer.
RESERVED_FDS = 64


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[ConnectionGuards]:
    """A guarded protocol class with these limits (httptools where installed, else h11), for ``uvicorn.Config``.

    Example::

        uvicorn.Config(app, http=guarded_protocol(header_timeout_s=10, max_connections=1000))
    """
    base = GuardedH11Protocol if HttpToolsProtocol is None else GuardedHttpToolsProtocol
    return type(base.__name__, (base,), {"header_timeout_s": header_timeout_s, "max_connections": max_connections})


class ConnectionGuards:
    """A header timeout and a connection limit, mixed into one of uvicorn's HTTP protocols.

    A connection has ``header_timeout_s`` to send a request's headers, counted from when it
    connects or got its previous answer; trickling bytes does not extend it. Past
    ``max_connections`` open connections, an idle one (no request in progress) is closed to make
    room: one that has never sent a whole request if there is one (a slow or idle client's), else
    a keep-alive one, the longest idle first. When every connection has a request in progress, the
    new one gets 503. A subclass says when a request's headers are in (``waiting_for_headers``).

    Example::

        uvicorn.Config(app, http=guarded_protocol(header_timeout_s=10, max_connections=1000))
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    _last_warning = 0.0  # class-wide: one warning a minute for the whole server

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self.idle_since = self.loop.time()
        self.answered = 0  # requests answered on this connection
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._make_room():
            self._refuse()
            return
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self.answered += 1
        super().on_response_complete()
        if not self.transport.is_closing() and self.waiting_for_headers():
            self.idle_since = self.loop.time()
            self._start_header_timer()

    def waiting_for_headers(self) -> bool:
        """No request's headers are in that has not been answered."""
        raise NotImplementedError

    def is_idle(self) -> bool:
        """No request in progress: waiting for (the rest of) a request's headers."""
        return (self.waiting_for_headers() and (self.cycle is None or self.cycle.response_complete)
                and not self.transport.is_closing())

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()  # quietly, as uvicorn closes an idle keep-alive connection

    def _make_room(self) -> bool:
        """Close the connection idle the longest, unless the open ones are within the limit after all."""
        open_ = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(open_) < self.max_connections:
            return True  # the rest are closing already
        idle = [c for c in open_ if isinstance(c, ConnectionGuards) and c.is_idle()]
        if not idle:
            return False
        # A keep-alive client that was answered before is the last to go: when a flood of new connections keeps
        # the server busy, its next request may be waiting unread, which would look idle (and long idle) here.
        min(idle, key=lambda c: (c.answered > 0, c.idle_since)).transport.close()
        self._warn("over max_connections=%d open connections: closing the longest idle ones to make room "
                   "(slow or idle clients; see header_timeout_s)", self.max_connections)
        return True

    def _refuse(self) -> None:
        body = json.dumps({"error": {"message": f"the server is busy: max_connections={self.max_connections} "
                                                "connections have a request in progress; retry later",
                                     "fields": []}}).encode()
        head = ("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n")
        self.transport.write(head.encode() + body)
        self.transport.close()
        self._warn("refused a connection: all max_connections=%d connections have a request in progress",
                   self.max_connections)

    @classmethod
    def _warn(cls, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - ConnectionGuards._last_warning >= 60:
            ConnectionGuards._last_warning = now
            log.warning(message + " (said at most once a minute)", *args)


class GuardedH11Protocol(ConnectionGuards, H11Protocol):
    """uvicorn's h11 protocol (pure Python) with the guards."""

    def waiting_for_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.waiting_for_headers():  # the headers are in
            self._stop_header_timer()


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(ConnectionGuards, HttpToolsProtocol):
        """uvicorn's httptools protocol with the guards."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self.unanswered = 0  # requests whose headers are in (pipelined ones included) and not yet answered
            super().connection_made(transport)

        def waiting_for_headers(self) -> bool:
            return self.unanswered == 0

        def on_headers_complete(self) -> None:
            self.unanswered += 1
            self._stop_header_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self.unanswered -= 1
            super().on_response_complete()


class QuietAcceptErrors:
    """An event-loop exception handler that reports running out of file descriptors once a minute, not per accept.

    asyncio logs ``socket.accept() out of system resource`` with a traceback at every failed
    accept, about once a second per listening socket for as long as the condition lasts.
    Everything else goes to the loop's default handler.

    Example::

        asyncio.get_running_loop().set_exception_handler(QuietAcceptErrors())
    """

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last = -float("inf")
        self._count = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != "socket.accept() out of system resource":
            loop.default_exception_handler(context)
            return
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            log.warning("cannot accept new connections: %s (%d time(s) since the last report); the server retries "
                        "every second. Raise the open-file limit (ulimit -n) or lower max_connections.",
                        context.get("exception"), self._count)
            self._last, self._count = now, 0


def fit_connection_limit(max_connections: int) -> int:
    """``max_connections``, or fewer if the open-file limit cannot hold them (it is raised as far as allowed).

    Example::

        fit_connection_limit(1000)  # 1000, after raising a soft limit of 1024 to 1064 (the hard limit allows it)
    """
    try:
        import resource
    except ImportError:  # Windows has no such limit
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return max_connections
    fitted = max(1, soft - min(RESERVED_FDS, soft // 2))
    log.warning("this process may open only %d files (ulimit -n), so the server keeps at most %d connections "
                "open instead of max_connections=%d; raise the limit to allow more.", soft, fitted, max_connections)
    return fitted
