"""ASGI middleware that guards each request: a Host check, security headers, and a deadline that also drops
the work of clients that have gone away.

Example::

    app.add_middleware(RequestDeadline, timeout_s=30, timed_out=lambda body_received: Response(status_code=503))
    app.add_middleware(HostCheck, allowed_hosts=(), refuse=lambda host: Response(status_code=421))
    app.add_middleware(SecurityHeaders)
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import anyio
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# nosniff: a JSON answer is never run as a script; DENY and frame-ancestors: no page may frame ours (clickjacking).
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", b"frame-ancestors 'none'")]


class SecurityHeaders:
    """ASGI middleware: add ``SECURITY_HEADERS`` to every answer that does not set them itself.

    Example::

        app.add_middleware(SecurityHeaders)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostCheck:
    """ASGI middleware: answer only the Host names this server is meant to have (against DNS rebinding).

    A web page whose domain an attacker points at 127.0.0.1 reaches a loopback server with the
    attacker's name as Host. So on connections to a loopback address only loopback names
    (localhost, 127.0.0.1, [::1]) and ``allowed_hosts`` are served. On other addresses (a server
    listening on 0.0.0.0) any name is served until ``allowed_hosts`` names some; ``'*'`` serves any
    name everywhere. ``refuse(host)`` makes the answer to a refused request.

    Example::

        app.add_middleware(HostCheck, allowed_hosts=("nlp.example.org", "*.lab.example"),
                           refuse=lambda host: Response(status_code=421))
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str], refuse: Callable[[str], Response]) -> None:
        self.app = app
        self.allowed = {name.lower() for name in allowed_hosts}
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed or not (
                self.allowed or _is_loopback_address(scope.get("server"))):
            await self.app(scope, receive, send)
            return
        raw = Headers(scope=scope).get("host", "")
        name = _host_name(raw)
        if name is not None and self._serves(name):
            await self.app(scope, receive, send)
            return
        await self.refuse(raw[:200])(scope, receive, send)

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


class RequestDeadline:
    """ASGI middleware: ``timeout_s`` seconds per request, from its headers to its answer; no work for gone clients.

    Past the deadline the request is cancelled (a request waiting for the model leaves the queue) and
    ``timed_out(body_received)`` makes the answer: give 408 while the body is still coming, 503 after.
    Once a request's body has arrived, the server sends ``http.disconnect`` only when the client hangs
    up (or the answer is complete), so a watcher waits for it and cancels the request: its answer would
    go nowhere, and the model has better things to do.

    Example::

        app.add_middleware(RequestDeadline, timeout_s=30,
                           timed_out=lambda body_received: Response(status_code=503 if body_received else 408))
    """

    def __init__(self, app: ASGIApp, timeout_s: float, timed_out: Callable[[bool], Response]) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.timed_out = timed_out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_received = started = complete = gone = False
        hung_up = anyio.Event()

        async with anyio.create_task_group() as tasks:

            async def watch_for_hang_up() -> None:
                nonlocal gone
                await receive()  # after the body, the only message is http.disconnect
                hung_up.set()
                if not complete:
                    gone = True
                    tasks.cancel_scope.cancel()

            async def app_receive() -> Message:
                nonlocal body_received
                if body_received:  # the watcher reads the connection now; tell the app what it sees
                    await hung_up.wait()
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request" and not message.get("more_body", False):
                    body_received = True
                    tasks.start_soon(watch_for_hang_up)
                return message

            async def app_send(message: Message) -> None:
                nonlocal started, complete
                if message["type"] == "http.response.start":
                    started = True
                    deadline.deadline = math.inf  # an answer under way is not cut off
                elif message["type"] == "http.response.body" and not message.get("more_body", False):
                    complete = True
                await send(message)

            with anyio.CancelScope(deadline=anyio.current_time() + self.timeout_s) as deadline:
                await self.app(scope, app_receive, app_send)
            tasks.cancel_scope.cancel()  # the watcher, if any

        if deadline.cancelled_caught and not started and not gone:
            await self.timed_out(body_received)(scope, receive, send)
