"""POST /predict's fast path (``korpair.serve.fast``) answers exactly as the FastAPI route would, and leaves every
body it does not take to the route.

Content-Type ``application/json`` takes the fast path; ``application/json; charset=utf-8`` (the same body to
the app) takes the route, so each request is sent both ways and the answers compared byte for byte.
"""

from __future__ import annotations

import json

import fastapi.routing
import pytest
from fastapi.testclient import TestClient

from korpair.inference import Predictor
from korpair.serve import ServeLimits, create_app
from korpair.types import Prediction

FAST = {"content-type": "application/json"}
ROUTE = {"content-type": "application/json; charset=utf-8"}

GOOD = [
    {"premise": "비가 많이 온다", "hypothesis": "날씨가 맑다"},
    {"pairs": [{"premise": "민수는 공원에 갔다", "hypothesis": "민수는 집에 있었다"},
               {"premise": "  앞뒤 공백 ", "hypothesis": "\t탭\t"},
               {"premise": "이모지 👍🏽 와 한자 漢字", "hypothesis": "e\u0301 조합 문자"}]},
    {"hypothesis": "순서가 바뀐 필드", "premise": "필드 순서"},
]
BAD = [
    b"", b"{", b"[]", b"null", b'"text"', b"{}", b'{"premise": "a"}', b'{"premise": 1, "hypothesis": "b"}',
    b'{"premise": "", "hypothesis": "b"}', b'{"premise": "   ", "hypothesis": "b"}',
    b'{"premise": "a", "hypothesis": "b", "extra": 1}', b'{"pairs": []}', b'{"pairs": {}}',
    b'{"pairs": [{"premise": "a"}], "premise": "b"}', b'{"premise": "\\ud800", "hypothesis": "b"}',
    b'{"premise": "a", "hypothesis": "b"} trailing', b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000,
    b'{"premise": "' + b"x" * 1001 + b'", "hypothesis": "b"}', json.dumps({"pairs": [GOOD[0]] * 65}).encode(),
    b'{"premise": "a", "hypothesis": NaN}', b'{"premise": "a", "hypothesis": ' + b"1" * 5000 + b"}",
]


class Fixed:
    """A classifier whose answers carry the awkward numbers: tiny, exact zero, many digits."""

    labels = ("entailment", "neutral", "contradiction")

    def predict(self, pairs, batch_size):
        return [Prediction("neutral", {"entailment": 1e-12, "neutral": 0.9999999999990001, "contradiction": 0.0})
                for _ in pairs]


@pytest.fixture
def route_calls(monkeypatch) -> list[str]:
    """Paths whose FastAPI endpoint ran."""
    calls = []
    original = fastapi.routing.run_endpoint_function

    async def counted(*, dependant, **kwargs):
        calls.append(dependant.path)
        return await original(dependant=dependant, **kwargs)

    monkeypatch.setattr(fastapi.routing, "run_endpoint_function", counted)
    return calls


def both_ways(client: TestClient, body: bytes) -> tuple:
    fast = client.post("/predict", content=body, headers=FAST)
    route = client.post("/predict", content=body, headers=ROUTE)
    return fast, route


def same(fast, route) -> None:
    assert fast.status_code == route.status_code, (fast.text, route.text)
    assert fast.content == route.content
    drop = {"date"}
    assert {k: v for k, v in fast.headers.items() if k not in drop} == \
        {k: v for k, v in route.headers.items() if k not in drop}


@pytest.mark.parametrize("model", ["classifier", "regressor", "fixed"])
def test_valid_requests_get_the_routes_answer_without_the_route(model, request, route_calls):
    classifier = Fixed() if model == "fixed" else Predictor.from_pretrained(
        request.getfixturevalue("tiny_model_dir" if model == "classifier" else "tiny_regressor_dir"), device="cpu")
    with TestClient(create_app(classifier, ServeLimits(max_wait_ms=0))) as client:
        for body in GOOD:
            raw = json.dumps(body, ensure_ascii=False).encode()
            del route_calls[:]
            fast, route = both_ways(client, raw)
            assert fast.status_code == 200, fast.text
            same(fast, route)
            assert route_calls == ["/predict"]  # the second one only: the first never reached the route


@pytest.mark.parametrize("body", BAD, ids=range(len(BAD)))
def test_bodies_the_fast_path_does_not_take_get_the_routes_errors(body):
    with TestClient(create_app(Fixed(), ServeLimits(max_wait_ms=0))) as client:
        fast, route = both_ways(client, body)
    assert 400 <= fast.status_code < 500, fast.text
    same(fast, route)


def test_a_body_streamed_in_pieces_is_read_whole():
    body = json.dumps(GOOD[1], ensure_ascii=False).encode()
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    with TestClient(create_app(Fixed(), ServeLimits(max_wait_ms=0))) as client:
        fast = client.post("/predict", content=iter(pieces), headers=FAST)
        route = client.post("/predict", content=body, headers=ROUTE)
    assert fast.status_code == 200 and len(fast.json()["predictions"]) == 3
    assert fast.content == route.content


def test_other_paths_and_methods_are_the_apps():
    with TestClient(create_app(Fixed(), ServeLimits(max_wait_ms=0))) as client:
        assert client.get("/predict", headers=FAST).status_code == 405
        assert client.post("/predict/", content=b"{}", headers=FAST).status_code in (307, 404, 422)
        assert client.post("/health", content=b"{}", headers=FAST).status_code == 405
