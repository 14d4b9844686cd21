"""The HTTP app: ``create_app(classifier)`` returns a FastAPI app; nothing loads at import.

Example::

    app = create_app(Predictor.from_pretrained("runs/sample/model"), ServeLimits(max_pairs=16))
    uvicorn.run(app)          # or simply: korpair.serve.run_server("runs/sample/model")

Endpoints:

- ``POST /predict``: one pair ``{"premise": ..., "hypothesis": ...}`` answers
  ``{"label": ..., "scores": {...}}``; a list ``{"pairs": [{...}, ...]}`` answers
  ``{"predictions": [...]}`` in the same order.
- ``GET /health``: status, labels, uptime and queue depth. ``GET /labels``: label names in id order.
- ``GET /``: the demo page (``page.html``, no outside assets). ``HEAD`` works wherever ``GET`` does.
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
A Host name the server is not meant to have gets 421 (``guards.HostCheck``), and every
answer carries nosniff and no-framing headers.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint
# annotations at runtime, and the request models are built per app (they hold its limits).

import importlib.resources
import logging
import sys
import time
from collections.abc import Sequence
from email.message import Message
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from korpair.serve.batcher import BatcherClosed, Classifier, MicroBatcher, PredictionFailed, QueueFull
from korpair.serve.guards import HostCheck, RequestDeadline, SecurityHeaders
from korpair.serve.limits import CLOSE, BodySizeLimit, ServeLimits
from korpair.types import Pair
from korpair.version import __version__

log = logging.getLogger(__name__)


class PredictionOut(BaseModel):
    """The answer for one pair."""

    label: str = Field(description="the most likely label", examples=["contradiction"])
    scores: dict[str, float] = Field(description="probability of every label (they sum to 1)",
                                     examples=[{"entailment": 0.03, "neutral": 0.06, "contradiction": 0.91}])


class PredictionsOut(BaseModel):
    """The answers for a list of pairs, in request order."""

    predictions: list[PredictionOut]


class HealthOut(BaseModel):
    status: Literal["ok", "stopped"]
    labels: list[str]
    uptime_s: float = Field(description="seconds since the app started")
    queue_depth: int = Field(description="pairs waiting for the model")
    batching: bool


class LabelsOut(BaseModel):
    labels: list[str] = Field(description="label names in id order")


class FieldProblem(BaseModel):
    field: str = Field(description="dotted path in the request body, e.g. pairs.3.premise", examples=["premise"])
    problem: str = Field(examples=["String should have at most 1000 characters"])


class ErrorDetail(BaseModel):
    message: str
    fields: list[FieldProblem] = []


class ErrorOut(BaseModel):
    """Shape of every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body is not valid JSON (or not UTF-8, nested too deep, "
                                            "a number too long)"},
    408: {"model": ErrorOut, "description": "the body did not arrive within request_timeout_s"},
    413: {"model": ErrorOut, "description": "the body is larger than max_body_bytes"},
    415: {"model": ErrorOut, "description": "Content-Type is not application/json"},
    421: {"model": ErrorOut, "description": "the Host header names a host this server does not answer to"},
    422: {"model": ErrorOut, "description": "a field is missing, of the wrong type, empty or too long"},
    500: {"model": ErrorOut, "description": "the model failed (details in the server log)"},
    503: {"model": ErrorOut, "description": "the server is busy (queue full, or no answer within "
                                            "request_timeout_s: see Retry-After), starting or stopping"},
}

REQUEST_EXAMPLES = {
    "one pair": {"summary": "one pair", "value": {"premise": "비가 많이 온다", "hypothesis": "날씨가 맑다"}},
    "several pairs": {"summary": "several pairs (answers come in the same order)", "value": {"pairs": [
        {"premise": "민수는 어제 공원에서 자전거를 탔다", "hypothesis": "민수는 자전거를 탈 줄 안다"},
        {"premise": "가게 문이 닫혀 있었다", "hypothesis": "가게는 영업 중이었다"},
    ]}},
}


def create_app(classifier: Classifier, limits: ServeLimits | None = None) -> FastAPI:
    """A FastAPI app serving ``classifier`` (loaded once, by the caller) within ``limits``.

    The micro-batcher starts and stops with the app's lifespan, so run the app
    with a server (uvicorn) or ``with TestClient(app) as client:``.

    Example::

        app = create_app(Predictor.from_pretrained("runs/sample/model"), ServeLimits(max_wait_ms=2))
        with TestClient(app) as client:
            client.post("/predict", json={"premise": "비가 온다", "hypothesis": "날씨가 맑다"}).json()
        # {'label': 'contradiction', 'scores': {'entailment': 0.03, 'neutral': 0.06, 'contradiction': 0.91}}
    """
    limits = limits or ServeLimits()
    labels = list(classifier.labels)
    batcher = MicroBatcher(classifier, max_batch_size=limits.max_batch_size, max_wait_ms=limits.max_wait_ms,
                           batching=limits.batching, max_queue_pairs=limits.max_queue_pairs)
    page = importlib.resources.files("korpair.serve").joinpath("page.html").read_text(encoding="utf-8")
    started = time.monotonic()
    PairIn, PairsIn = _request_models(limits)

    async def lifespan(app: FastAPI):
        nonlocal started
        async with batcher.running():
            started = time.monotonic()
            log.info("serving labels %s (batching=%s)", labels, limits.batching)
            yield

    app = _new_fastapi(
        title="korpair", version=__version__, lifespan=lifespan,
        description="Korean sentence-pair classification (NLI). Send one pair or a list of pairs to /predict.",
    )
    # add_middleware wraps what is there: the last one added sees a request first.
    app.add_middleware(BodySizeLimit, max_body_bytes=limits.max_body_bytes,
                       too_large=lambda n: _error_response(413, f"request body over {n} bytes"))
    app.add_middleware(RequestDeadline, timeout_s=limits.request_timeout_s,
                       timed_out=lambda body_received: _timed_out(limits, batcher, body_received))
    app.add_middleware(HostCheck, allowed_hosts=limits.allowed_hosts, refuse=_wrong_host)
    app.add_middleware(SecurityHeaders)
    _add_error_handlers(app)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return _error_response(503, str(exc), headers={"retry-after": str(exc.retry_after_s)})

    @app.post("/predict", response_model=PredictionOut | PredictionsOut, responses=ERROR_RESPONSES,
              dependencies=[Depends(_require_json)], summary="Classify one pair or a list of pairs")
    async def predict(
        payload: Annotated[
            Annotated[PairIn, Tag("pair")] | Annotated[PairsIn, Tag("pairs")],
            Discriminator(_request_kind),
            Body(openapi_examples=REQUEST_EXAMPLES),
        ],
    ) -> PredictionOut | PredictionsOut:
        """Send `{"premise": ..., "hypothesis": ...}` to get `{"label": ..., "scores": {...}}`, or
        `{"pairs": [...]}` to get `{"predictions": [...]}` in the same order."""
        many = isinstance(payload, PairsIn)
        items = payload.pairs if many else [payload]
        predictions = await batcher.predict([Pair(item.premise, item.hypothesis) for item in items])
        out = [PredictionOut(label=p.label, scores=dict(p.scores)) for p in predictions]
        return PredictionsOut(predictions=out) if many else out[0]

    @app.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}},
             summary="Is the server up, and how busy is it")
    async def health(response: Response) -> HealthOut:
        if not batcher.is_running:
            response.status_code = 503  # so that a load balancer's health check sees it
        return HealthOut(status="ok" if batcher.is_running else "stopped", labels=labels,
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


def _request_models(limits: ServeLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """Request bodies whose schema holds this app's limits (so /openapi.json documents them)."""
    Text = Annotated[
        str,
        Field(min_length=1, max_length=limits.max_text_chars,
              description=f"1 to {limits.max_text_chars} characters, not only whitespace",
              # In the schema only, so that clients and fuzzers know; _check_text gives the friendlier error.
              json_schema_extra={"pattern": NOT_ONLY_WHITESPACE}),
        AfterValidator(_check_text),
    ]

    class PairIn(BaseModel):
        """One sentence pair."""

        model_config = ConfigDict(extra="forbid", title="PairIn")
        premise: Text = Field(examples=["비가 많이 온다"])
        hypothesis: Text = Field(examples=["날씨가 맑다"])

    class PairsIn(BaseModel):
        """Several pairs; the answers come back in the same order."""

        model_config = ConfigDict(extra="forbid", title="PairsIn")
        pairs: list[PairIn] = Field(min_length=1, max_length=limits.max_pairs,
                                    description=f"1 to {limits.max_pairs} pairs")

    return PairIn, PairsIn


# A character that str.isspace() rejects, written so that both ECMA (JSON Schema) and Python regexes read it.
NOT_ONLY_WHITESPACE = r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _check_text(text: str) -> str:
    # (A lone surrogate such as JSON "\ud800" never gets here: pydantic rejects it as "not a valid string".)
    if text.isspace():
        raise PydanticCustomError("blank_text", "text is only whitespace")
    return text


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

    @app.exception_handler(PredictionFailed)
    async def prediction_failed(request: Request, exc: PredictionFailed) -> JSONResponse:
        return _error_response(500, f"{exc} (details in the server log)")

    @app.exception_handler(BatcherClosed)
    async def not_running(request: Request, exc: BatcherClosed) -> JSONResponse:
        return _error_response(503, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback itself; the client sees no internals.
        return _error_response(500, "internal server error (details in the server log)")


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
