"""The HTTP app: ``create_app(classifier)`` returns a FastAPI app; nothing loads at import.

Example::

    app = create_app(Predictor.from_pretrained("runs/sample/model"), ServeLimits(max_pairs=16))
    uvicorn.run(app)          # or simply: korpair.serve.run_server("runs/sample/model")

Endpoints:

- ``POST /predict``: one pair ``{"premise": ..., "hypothesis": ...}`` answers
  ``{"label": ..., "scores": {...}}`` (a classifier) or ``{"score": ...}`` (a regression
  model, e.g. KorSTS similarity); a list ``{"pairs": [{...}, ...]}`` answers
  ``{"predictions": [...]}`` in the same order. The schema documents the answer of the model served.
- ``GET /health``: status, task, labels, score range, uptime and queue depth. ``GET /labels``: label names in id order.
- ``GET /``: the demo page (``page.html``, no outside assets): probability bars for a classifier, a
  similarity gauge (유사도) for a regression model. ``HEAD`` works wherever ``GET`` does.
- ``GET /openapi.json`` and ``GET /docs`` (Swagger UI, with "Try it out").

The API docs work offline. FastAPI's stock /docs loads Swagger UI from a CDN,
so it is replaced by the copy that the ``fastapi-offline`` package ships,
served by this app under ``/static-offline-docs``; Swagger UI's online
validator is turned off too. There is no /redoc: ReDoc always loads its logo
from cdn.redoc.ly. Without ``fastapi-offline`` /docs answers 404 (a warning
says why); /openapi.json is always there.

Every error, 4xx or 5xx, has one shape and names the fields at fault::

    {"error": {"message": "invalid request: 1 problem",
               "fields": [{"field": "pairs.3.premise", "problem": "String should have at most 1000 characters"}]}}

A client mistake is never a 500; a server fault is a JSON 500 without a
traceback (the traceback goes to the log) and the server keeps running.

Load is shed, not queued for ever (``ServeLimits``): past ``max_queue_pairs`` waiting
pairs, or ``request_timeout_s`` after its headers, a request gets 503 with
Retry-After; a request whose client has gone is dropped before the model sees it.
A Host name the server is not meant to have gets 421 (``guards.Guards``), and every
answer carries nosniff and no-framing headers.

A valid ``POST /predict`` sent as ``application/json`` is answered ahead of FastAPI's routing
(``fast.FastPredict``) with the route's own request models and answer; every other request,
and every body that does not validate, goes through the route.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint
# annotations at runtime, and the request models are built per app (they hold its limits).

import importlib.resources
import logging
import math
import sys
import time
from collections.abc import Sequence
from email.message import Message
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Discriminator, Tag
from starlette.exceptions import HTTPException as StarletteHTTPException

from korpair.serve.batcher import BatcherClosed, Classifier, MicroBatcher, PredictionFailed, QueueFull
from korpair.serve.fast import FastPredict
from korpair.serve.guards import Guards
from korpair.serve.limits import CLOSE, ServeLimits
from korpair.serve.page import render_page
from korpair.serve.schemas import (
    ERROR_RESPONSES,
    REQUEST_EXAMPLES,
    ErrorDetail,
    ErrorOut,
    FieldProblem,
    HealthOut,
    LabelsOut,
    PredictionOut,
    answer_models,
    request_models,
)
from korpair.types import Pair, Prediction, ScoreRange
from korpair.version import __version__

log = logging.getLogger(__name__)


def create_app(classifier: Classifier, limits: ServeLimits | None = None) -> FastAPI:
    """A FastAPI app serving ``classifier`` (loaded once, by the caller) within ``limits``.

    A model whose ``task`` is ``"regression"`` (a ``Predictor`` of a regression
    model folder) answers scores, and its schema, /health and page say so;
    anything else is served as a classifier.

    The micro-batcher starts and stops with the app's lifespan, so run the app
    with a server (uvicorn) or ``with TestClient(app) as client:``.

    Example::

        app = create_app(Predictor.from_pretrained("runs/sample/model"), ServeLimits(max_wait_ms=2))
        with TestClient(app) as client:
            client.post("/predict", json={"premise": "비가 온다", "hypothesis": "날씨가 맑다"}).json()
        # {'label': 'contradiction', 'scores': {'entailment': 0.03, 'neutral': 0.06, 'contradiction': 0.91}}
        # a regression model (e.g. trained on klue-sts): {'score': 1.27}
    """
    limits = limits or ServeLimits()
    labels = list(classifier.labels)
    regression = getattr(classifier, "task", "classification") == "regression"
    span = (getattr(classifier, "score_range", None) or ScoreRange()) if regression else None
    calibrated = getattr(classifier, "calibrated", False) and getattr(classifier, "calibration", None) is not None
    temperature = float(classifier.temperature) if calibrated and not regression else None
    One, Many = answer_models("regression" if regression else "classification", span)
    batcher = MicroBatcher(classifier, max_batch_size=limits.max_batch_size, max_wait_ms=limits.max_wait_ms,
                           batching=limits.batching, max_queue_pairs=limits.max_queue_pairs,
                           max_batch_tokens=limits.max_batch_tokens)
    page = render_page(importlib.resources.files("korpair.serve").joinpath("page.html").read_text(encoding="utf-8"),
                       span)
    started = time.monotonic()
    PairIn, PairsIn = request_models(limits)

    async def lifespan(app: FastAPI):
        nonlocal started
        async with batcher.running():
            started = time.monotonic()
            log.info("serving %s (batching=%s)", f"scores, range {span.low} to {span.high}" if span
                     else f"labels {labels}", limits.batching)
            yield

    app = _new_fastapi(
        title="korpair", version=__version__, lifespan=lifespan,
        description=("Korean sentence-pair similarity (STS): a score per pair." if regression else
                     "Korean sentence-pair classification (NLI).") + " Send one pair or a list of pairs to /predict.",
    )
    async def respond(payload: BaseModel) -> BaseModel:
        many = isinstance(payload, PairsIn)
        items = payload.pairs if many else [payload]
        predictions = await batcher.predict([Pair(item.premise, item.hypothesis) for item in items])
        out = [One(score=_score(p)) if regression else PredictionOut(label=p.label, scores=dict(p.scores))
               for p in predictions]
        return Many(predictions=out) if many else out[0]

    def parse(body: Any) -> BaseModel:
        return (PairsIn if _request_kind(body) == "pairs" else PairIn).model_validate(body)

    # add_middleware wraps what is there: the last one added sees a request first. The guards wrap FastPredict.
    app.add_middleware(FastPredict, parse=parse, answer=respond, errors=_known_error)
    app.add_middleware(Guards, allowed_hosts=limits.allowed_hosts, max_body_bytes=limits.max_body_bytes,
                       timeout_s=limits.request_timeout_s, refuse_host=_wrong_host,
                       too_large=lambda n: _error_response(413, f"request body over {n} bytes"),
                       timed_out=lambda body_received: _timed_out(limits, batcher, body_received))
    _add_error_handlers(app)

    answer = '`{"score": ...}`' if regression else '`{"label": ..., "scores": {...}}`'

    @app.post("/predict", response_model=One | Many, responses=ERROR_RESPONSES,
              dependencies=[Depends(_require_json)],
              summary=f"{'Score' if regression else 'Classify'} one pair or a list of pairs",
              description=f'Send `{{"premise": ..., "hypothesis": ...}}` to get {answer}, or '
                          '`{"pairs": [...]}` to get `{"predictions": [...]}` in the same order.')
    async def predict(
        payload: Annotated[
            Annotated[PairIn, Tag("pair")] | Annotated[PairsIn, Tag("pairs")],
            Discriminator(_request_kind),
            Body(openapi_examples=REQUEST_EXAMPLES),
        ],
    ) -> BaseModel:
        return await respond(payload)

    @app.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}},
             summary="Is the server up, and how busy is it")
    async def health(response: Response) -> HealthOut:
        if not batcher.is_running:
            response.status_code = 503  # so that a load balancer's health check sees it
        return HealthOut(status="ok" if batcher.is_running else "stopped", labels=labels,
                         task="regression" if regression else "classification",
                         score_range=[span.low, span.high] if span else None, temperature=temperature,
                         backend=getattr(classifier, "backend", None),
                         uptime_s=round(time.monotonic() - started, 3), queue_depth=batcher.queue_depth,
                         batching=limits.batching)

    @app.get("/labels", response_model=LabelsOut, summary="Label names in id order")
    async def get_labels() -> LabelsOut:
        return LabelsOut(labels=labels)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    # HEAD as GET (the server sends no body for HEAD); kept out of the schema, which documents GET.
    for path, endpoint in (("/", demo_page), ("/health", health), ("/labels", get_labels)):
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
    return app


def _score(prediction: Prediction) -> float:
    # JSON has no NaN: a model that gives none fails this request alone, as any model fault does.
    score = getattr(prediction, "score", None)
    if not isinstance(score, (int, float)) or not math.isfinite(score):
        raise PredictionFailed(f"the model gave no finite score (got {score!r})")
    return float(score)


def _timed_out(limits: ServeLimits, batcher: MicroBatcher, body_received: bool) -> JSONResponse:
    if not body_received:
        return _error_response(408, f"the request body did not arrive within request_timeout_s="
                                    f"{limits.request_timeout_s:g} seconds", headers=dict(CLOSE))
    return _error_response(503, f"no answer within request_timeout_s={limits.request_timeout_s:g} seconds: the "
                                f"server is busy ({batcher.queue_depth} pairs wait for the model); retry later",
                           headers={"retry-after": str(batcher.retry_after_s())})


def _wrong_host(host: str) -> JSONResponse:
    return _error_response(421, f"Host {host!r} is not served here: this server answers its loopback names "
                                "(localhost, 127.0.0.1, [::1]) and the names in allowed_hosts, which guards "
                                "against DNS rebinding. Add the name to allowed_hosts to serve it (e.g. behind a "
                                "reverse proxy).")


def _request_kind(value: Any) -> str:
    # Which body this is decides which schema reports errors: a body with "pairs" is a list.
    return "pairs" if isinstance(value, dict) and "pairs" in value else "pair"


async def _require_json(request: Request) -> None:
    # async: a plain def would cost every request a hop to the thread pool.
    message = Message()
    message["content-type"] = request.headers.get("content-type", "")
    kind = message.get_content_type()  # lower-cased, parameters dropped; "text/plain" when absent
    if not (kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))):
        got = request.headers.get("content-type")
        got = f"got {got!r}" if got else "the request has no Content-Type header"
        raise HTTPException(415, f"Content-Type must be application/json ({got})")


def _new_fastapi(**kwargs: Any) -> FastAPI:
    # validatorUrl=None: Swagger UI would otherwise ask validator.swagger.io to check the schema.
    kwargs["swagger_ui_parameters"] = {"validatorUrl": None, "defaultModelsExpandDepth": 0}
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        log.warning("fastapi-offline is not installed: /docs is off (it would need a CDN); "
                    "/openapi.json still works. `pip install fastapi-offline` to get it.")
        return FastAPI(docs_url=None, redoc_url=None, **kwargs)
    return FastAPIOffline(redoc_url=None, **kwargs)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            e = errors[0]
            position = e["loc"][1] if len(e["loc"]) > 1 else "?"
            reason = e.get("ctx", {}).get("error", "")
            return _error_response(400, f"the body is not valid JSON: {reason} at character {position}",
                                   [FieldProblem(field="body", problem="not valid JSON")])
        problems = [FieldProblem(field=_field_name(e["loc"]), problem=_problem(e)) for e in errors]
        noun = "problem" if len(problems) == 1 else "problems"
        first = f"{problems[0].field}: {problems[0].problem}" if problems else ""
        return _error_response(422, f"invalid request: {len(problems)} {noun} ({first})", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and (problem := _unparsable_body(exc.__cause__)):
            return _error_response(400, f"the body cannot be read as JSON: {problem}",
                                   [FieldProblem(field="body", problem=problem)])
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no such page: {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
        return _error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(QueueFull)
    @app.exception_handler(PredictionFailed)
    @app.exception_handler(BatcherClosed)
    async def batcher_error(request: Request, exc: Exception) -> JSONResponse | None:
        return _known_error(exc)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback itself; the client sees no internals.
        return _error_response(500, "internal server error (details in the server log)")


def _known_error(exc: Exception) -> JSONResponse | None:
    """The answer to the batcher's errors (the queue is full, the model failed, the server stops); None: other."""
    if isinstance(exc, QueueFull):
        return _error_response(503, str(exc), headers={"retry-after": str(exc.retry_after_s)})
    if isinstance(exc, PredictionFailed):
        return _error_response(500, f"{exc} (details in the server log)")
    if isinstance(exc, BatcherClosed):
        return _error_response(503, str(exc))
    return None


def _unparsable_body(cause: BaseException | None) -> str | None:
    """What json.loads choked on, for the errors FastAPI reports only as "error parsing the body"."""
    if isinstance(cause, UnicodeDecodeError):
        return (f"not UTF-8 (byte 0x{cause.object[cause.start]:02x} at position {cause.start}); "
                "send JSON encoded as UTF-8")
    if isinstance(cause, RecursionError):
        return "nested too deeply (lists or objects inside each other ~1000 levels deep); a request is 3 levels deep"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return f"a number with over {sys.get_int_max_str_digits()} digits; send it as a string if you need it"
    return None


def _field_name(loc: Sequence[Any]) -> str:
    # ("body", "pairs", "pairs", 3, "premise") -> "pairs.3.premise": drop "body" and the union tag.
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    if parts and parts[0] in ("pair", "pairs"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "body"


def _problem(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing" and tuple(error["loc"]) == ("body",):
        return "the body is empty: send {\"premise\": ..., \"hypothesis\": ...} or {\"pairs\": [...]}"
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return f"{error['msg']}; expected {{\"premise\": ..., \"hypothesis\": ...}} or {{\"pairs\": [...]}}"
    if kind == "extra_forbidden":
        return "unknown field: a pair has only premise and hypothesis, and a list is {\"pairs\": [...]}"
    return error["msg"]


def _error_response(status: int, message: str, fields: Sequence[FieldProblem] = (),
                    headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorOut(error=ErrorDetail(message=message, fields=list(fields)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
