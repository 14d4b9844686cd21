"""The checks every request passes before the app sees it, in one ASGI layer: a Host check, a body size limit,
a deadline that also drops the work of clients that have gone away, and security headers on every answer.

One layer, not four: each layer wraps ``receive`` and ``send`` again, and a lone client waiting out a model
call comes back to cold caches, where the four (an anyio task group among them) cost about 0.6 ms a request.

Example::

    app.add_middleware(Guards, allowed_hosts=(), max_body_bytes=1 << 20, timeout_s=30,
                       refuse_host=lambda host: Response(status_code=421),
                       too_large=lambda n: Response(status_code=413),
                       timed_out=lambda body_received: Response(status_code=503 if body_received else 408))
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from korpair.serve.limits import CLOSE, BodyTooLarge

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# nosniff: a JSON answer is never run as a script; DENY and frame-ancestors: no page may frame ours (clickjacking).
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", b"frame-ancestors 'none'")]


class Guards:
    """ASGI middleware: the Host check, the body size limit, the deadline and the security headers.

    **Host**: a web page whose domain an attacker points at 127.0.0.1 reaches a loopback server with
    the attacker's name as Host (DNS rebinding). So on connections to a loopback address only loopback
    names (localhost, 127.0.0.1, [::1]) and ``allowed_hosts`` are served. On other addresses (a server
    listening on 0.0.0.0) any name is served until ``allowed_hosts`` names some; ``'*'`` serves any
    name everywhere. ``refuse_host(host)`` makes the answer to a refused request.

    **Body size**: a declared ``Content-Length`` over ``max_body_bytes`` is refused before the app
    runs; a body without one (chunked) is counted as it streams, and reading stops at the first chunk
    past the limit (``BodyTooLarge``, which the app's handler answers, or else ``too_large``). The
    refusal says ``Connection: close``, so the unread rest of the body is not waited for.

    **Deadline**: ``timeout_s`` seconds per request, from its headers to its answer. Past it the request
    is cancelled (a request waiting for the model leaves the queue) and ``timed_out(body_received)``
    makes the answer: 408 while the body is still coming, 503 after. Once a request's body has arrived,
    the server sends ``http.disconnect`` only when the client hangs up (or the answer is complete), so
    a watcher waits for it and cancels the request: its answer would go nowhere.

    **Headers**: ``SECURITY_HEADERS`` on every answer that does not set them itself.

    Example::

        app.add_middleware(Guards, allowed_hosts=("nlp.example.org",), max_body_bytes=1 << 20, timeout_s=30,
                           refuse_host=lambda host: Response(status_code=421),
                           too_large=lambda n: Response(status_code=413),
                           timed_out=lambda body_received: Response(status_code=503 if body_received else 408))
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Sequence[str], max_body_bytes: int, timeout_s: float,
                 refuse_host: Callable[[str], Response], too_large: Callable[[int], Response],
                 timed_out: Callable[[bool], Response]) -> None:
        self.app = app
        self.allowed = {name.lower() for name in allowed_hosts}
        self._served: set[str] = set()  # Host headers judged servable
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.refuse_host = refuse_host
        self.too_large = too_large
        self.timed_out = timed_out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, receive, send)
        refused = self._refused_host(scope)
        if refused is not None:
            await exchange.answer(self.refuse_host(refused[:200]))
        elif scope["type"] == "websocket":
            await self.app(scope, receive, send)
        elif (declared := _content_length(scope)) is not None and declared > self.max_body_bytes:
            await exchange.refuse_body()
        else:
            await exchange.run()

    def _refused_host(self, scope: Scope) -> str | None:
        """The Host header of a request this server must not answer; None when it may."""
        if "*" in self.allowed or not (self.allowed or _is_loopback_address(scope.get("server"))):
            return None
        raw = next((value for name, value in scope["headers"] if name == b"host"), b"").decode("latin-1")
        if raw not in self._served:
            name = _host_name(raw)
            if name is None or not self._serves(name):
                return raw
            if len(self._served) < 64:  # a client's Host is the same on every request: judge it once
                self._served.add(raw)
        return None

    def _serves(self, name: str) -> bool:
        if name in LOOPBACK_NAMES or name in self.allowed or _is_loopback_ip(name):
            return True
        return any(pattern.startswith("*.") and name.endswith(pattern[1:]) for pattern in self.allowed)


def _host_name(header: str) -> str | None:
    """``'[::1]:8000'`` -> ``'::1'``, ``'LocalHost'`` -> ``'localhost'``; None for a malformed header."""
    if not header or any(c in header for c in "/?#@\\ "):
        return None
    try:
        parts = urlsplit("//" + header)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return None
    return parts.hostname or None


def _is_loopback_ip(name: str) -> bool:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _is_loopback_address(server: tuple[str, int | None] | None) -> bool:
    # No address: a Unix socket, which only this machine can reach.
    return server is None or server[0] == "localhost" or _is_loopback_ip(server[0])


class _Exchange:
    """One HTTP request under the guards: its ``receive`` and ``send`` as the app sees them, and its answer."""

    def __init__(self, guards: Guards, scope: Scope, receive: Receive, send: Send) -> None:
        self.guards = guards
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0  # body bytes
        self.body_received = self.started = self.complete = self.gone = self.finished = False
        self.watcher: asyncio.Future | None = None
        self.deadline: asyncio.Timeout | None = None
        self.task = asyncio.current_task()

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self.guards.timeout_s) as self.deadline:
                try:
                    await self.guards.app(self.scope, self.receive, self.send)
                finally:
                    self.deadline = None  # an answer made below (408, 413, 503) runs without one
        except TimeoutError:
            if not self.started:
                await self.answer(self.guards.timed_out(self.body_received))
        except asyncio.CancelledError:
            if self.gone and self.task.uncancel() == 0:
                return  # cancelled here, because the client has gone: nobody to answer
            raise
        except BodyTooLarge:
            if self.started:  # normally the app's handler answers; this covers a body read outside a route
                raise
            await self.refuse_body()
        finally:
            self.finished = True  # a hang-up seen from now on has nothing left to cancel
            if self.watcher is not None and not self.watcher.done():
                self.watcher.cancel()

    async def receive(self) -> Message:
        if self.body_received:  # the watcher reads the connection now; tell the app what it sees
            await asyncio.shield(self.watcher)
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.guards.max_body_bytes:
                raise BodyTooLarge(self.guards.max_body_bytes)
            if not message.get("more_body", False):
                self.body_received = True
                # after the body, the only message is http.disconnect
                self.watcher = asyncio.ensure_future(self._receive())
                self.watcher.add_done_callback(self._hung_up)
        return message

    def _hung_up(self, watcher: asyncio.Future) -> None:
        if not watcher.cancelled() and not (self.complete or self.gone or self.finished):
            self.gone = True
            self.task.cancel()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if self.deadline is not None and not self.deadline.expired():
                self.deadline.reschedule(None)  # an answer under way is not cut off
            present = {name.lower() for name, _ in message.get("headers", ())}
            extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)

    async def answer(self, response: Response) -> None:
        await response(self.scope, self._receive, self.send)

    async def refuse_body(self) -> None:
        response = self.guards.too_large(self.guards.max_body_bytes)
        response.headers.update(CLOSE)
        await self.answer(response)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11/httptools) rejects a malformed one before we see it
    return None
