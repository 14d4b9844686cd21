"""The shapes of what the server reads and answers: pydantic models that FastAPI validates and documents.

The request models are built per app (their schema holds the app's limits); the
answer of ``POST /predict`` depends on the model served: a classifier answers
``{"label": ..., "scores": {...}}`` (``PredictionOut``), a regression model
``{"score": ...}`` (``ScoreOut``), and /openapi.json documents the one it gives.

Example::

    PairIn, PairsIn = request_models(ServeLimits(max_pairs=16))
    One, Many = answer_models("regression", ScoreRange(0, 5))   # ScoreOut, ScoresOut
"""

# No `from __future__ import annotations`: the models built in functions refer to local types.

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from korpair.serve.limits import ServeLimits
from korpair.types import ScoreRange


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
    task: Literal["classification", "regression"] = Field(
        description="what the model predicts: a label (classification) or a score (regression)")
    labels: list[str] = Field(description="label names in id order (a regression model's one output: score)")
    # A list, not a tuple: FastAPI writes a tuple's prefixItems as an "items" array, which OpenAPI 3.1 refuses.
    score_range: list[float | None] | None = Field(
        min_length=2, max_length=2,
        description="a regression model's score range [low, high], as trained (null: open); null for a classifier")
    temperature: float | None = Field(
        None, description="the calibration temperature the probabilities are computed at (fitted on the validation "
        "split at training); null: the model's raw probabilities (none fitted, or served uncalibrated)")
    backend: str | None = Field(
        None, description="what runs the model (torch, torch-bf16, onnx, onnx-int8, openvino, openvino-int8): the "
        "fastest one measured when the model was exported, unless the server was told otherwise")
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


def answer_models(task: str, score_range: ScoreRange | None = None) -> tuple[type[BaseModel], type[BaseModel]]:
    """The answer to one pair and to a list of pairs, for a model of this task."""
    if task != "regression":
        return PredictionOut, PredictionsOut
    span = score_range or ScoreRange()
    trained = (f"trained on scores from {_bound(span.low)} to {_bound(span.high)}; the model's raw output, not "
               "clipped, so it may fall a little outside")
    known = span.low is not None and span.high is not None
    example = round(span.low + 0.76 * (span.high - span.low), 2) if known else 3.8
    score = (float, Field(description=f"how similar the two sentences are ({trained})", examples=[example]))
    one = create_model("ScoreOut", __doc__="The answer for one pair.", score=score)
    many = create_model("ScoresOut", __doc__="The answers for a list of pairs, in request order.",
                        predictions=(list[one], ...))
    return one, many


def _bound(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


def request_models(limits: ServeLimits) -> tuple[type[BaseModel], type[BaseModel]]:
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
