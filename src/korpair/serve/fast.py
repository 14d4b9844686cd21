"""The common request to /predict answered without FastAPI's routing: the path that decides a lone client's latency.

A served model answers in 10-15 ms (int8, one pair, 2 cores), and FastAPI's request machinery (routing,
dependencies, the request object, validating the answer again) took about 0.5 ms of a request's 0.6 ms of
server time when warm, more after the idle wait of a lone client. ``FastPredict`` sits in front of the
routes and takes ``POST /predict`` with ``Content-Type: application/json`` itself: it reads the body,
``json.loads`` it and validates it with the app's own request models, predicts with the app's own answer
function and sends the answer as ``JSONResponse`` would. The guards (Host, size, deadline, security
headers) wrap it as they wrap the routes.

Anything else, and any body that does not parse or validate, goes to the app unchanged, the body replayed:
the route answers it, so errors and their wording are the app's. Only the exceptions of a valid request are
answered here, through ``errors`` (the app's own error answers).

Example::

    app.add_middleware(FastPredict, parse=lambda obj: PairIn.model_validate(obj), answer=answer,
                       errors=lambda exc: None)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What json.loads raises on bodies it refuses (bad JSON, bad UTF-8, nesting or digits past Python's limits).
_UNPARSABLE = (ValueError, RecursionError)


class FastPredict:
    """ASGI middleware: answer valid ``POST path`` JSON requests with ``answer(parse(json))``; the rest to the app.

    ``parse(obj)`` turns the decoded JSON into the request model (raising ``ValidationError`` when it
    does not fit); ``answer(payload)`` computes the answer model; ``errors(exc)`` makes the response for
    an exception of ``answer`` (None: not one it knows, so it propagates like a route's would).

    Example::

        app.add_middleware(FastPredict, parse=PairIn.model_validate, answer=answer, errors=lambda exc: None)
    """

    def __init__(self, app: ASGIApp, parse: Callable[[Any], BaseModel],
                 answer: Callable[[BaseModel], Awaitable[BaseModel]],
                 errors: Callable[[Exception], Response | None], path: str = "/predict") -> None:
        self.app = app
        self.parse = parse
        self.answer = answer
        self.errors = errors
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path or not _plain_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        payload = self._payload(messages)
        if payload is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            answer = await self.answer(payload)
        except Exception as err:
            response = self.errors(err)
            if response is None:
                raise
        else:
            response = JSONResponse(answer.model_dump(mode="json"))
        await response(scope, receive, send)

    def _payload(self, messages: list[Message]) -> BaseModel | None:
        if messages[-1]["type"] != "http.request":
            return None  # the client left mid-body: the app says what it says to that
        body = b"".join(m.get("body", b"") for m in messages)
        try:
            return self.parse(json.loads(body))
        except (*_UNPARSABLE, ValidationError):
            return None


def _plain_json(scope: Scope) -> bool:
    # Exactly application/json (what clients and the demo page send); "+json" types or parameters take the route.
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.lower() == b"application/json"
    return False


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` again, then what the connection sends next."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
