"""Serving a regression model (sentence similarity): score answers, their schema, /health, the page's info."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from test_serve import PAIRS, TOLERANCE, FakeClassifier, assert_error_shape, one, post_json, run_with_app

from korpair.inference import Predictor
from korpair.serve import ServeLimits, create_app
from korpair.serve.page import INFO_BLOCK, gauge_range, render_page
from korpair.types import Prediction, ScoreRange


@pytest.fixture(scope="module")
def regressor(tiny_regressor_dir) -> Predictor:
    return Predictor.from_pretrained(tiny_regressor_dir, device="cpu")


@pytest.fixture(scope="module")
def client(regressor):
    with TestClient(create_app(regressor, ServeLimits(max_wait_ms=1))) as c:
        yield c


class FakeRegressor:
    """Scores each pair with the number its premise holds ("3.5" -> 3.5); records every call."""

    labels = ("score",)
    task = "regression"

    def __init__(self, score_range: ScoreRange = ScoreRange(0, 5)) -> None:
        self.score_range = score_range
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def predict(self, pairs, batch_size):
        with self._lock:
            self.batch_sizes.append(len(pairs))
        return [Prediction(None, {}, score=float(p.premise)) for p in pairs]


def model_info(html: str) -> dict:
    block = re.search(r'<script id="model-info" type="application/json">(.*?)</script>', html, re.S)
    assert block, "the page has no model-info block"
    return json.loads(block.group(1))


# --- answers ---------------------------------------------------------------------------------------------


def test_predict_one_pair_answers_the_models_score(client, regressor):
    response = client.post("/predict", json=one(*PAIRS[0]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"score"}  # no label, no probabilities
    [direct] = regressor.predict_scores([PAIRS[0]])
    assert body["score"] == pytest.approx(float(direct), abs=TOLERANCE)


def test_predict_list_keeps_order_and_matches_the_model(client, regressor):
    pairs = PAIRS + PAIRS[::-1]
    response = client.post("/predict", json={"pairs": [one(a, b) for a, b in pairs]})
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert all(set(a) == {"score"} for a in answers)
    singles = [float(regressor.predict_scores([p])[0]) for p in pairs]
    assert [a["score"] for a in answers] == pytest.approx(singles, abs=TOLERANCE)
    assert len({round(s, 4) for s in singles}) > 1  # the pairs really get different scores: order is checked


def test_health_reports_the_task_and_the_score_range(client):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["task"] == "regression" and health["score_range"] == [0, 5]
    assert client.get("/labels").json() == {"labels": ["score"]}
    with TestClient(create_app(FakeClassifier())) as c:
        health = c.get("/health").json()
    assert health["task"] == "classification" and health["score_range"] is None


def test_an_open_score_range_is_reported_open_and_drawn_on_the_sts_scale():
    with TestClient(create_app(FakeRegressor(ScoreRange()))) as c:
        assert c.get("/health").json()["score_range"] == [None, None]
        assert model_info(c.get("/").text) == {"task": "regression", "score_range": [None, None], "gauge": [0, 5]}
        assert post_json(c, one("7.25")).json() == {"score": 7.25}  # the raw output, never clipped


def test_gauge_range_fills_open_ends():
    assert gauge_range(ScoreRange(0, 5)) == (0, 5)
    assert gauge_range(ScoreRange(1, 2)) == (1, 2)
    assert gauge_range(ScoreRange(None, 1)) == (0, 1)
    assert gauge_range(ScoreRange(None, -1)) == (-6, -1)
    assert gauge_range(ScoreRange(-2, None)) == (-2, 5)
    assert gauge_range(ScoreRange(8, None)) == (8, 13)


# --- the schema ----------------------------------------------------------------------------------------------


def answer_schemas(app) -> tuple[set[str], dict]:
    with TestClient(app) as c:
        spec = c.get("/openapi.json").json()
    answers = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    return {r["$ref"].rsplit("/", 1)[1] for r in answers["anyOf"]}, spec


def test_openapi_says_a_regression_model_answers_a_number():
    refs, spec = answer_schemas(create_app(FakeRegressor()))
    assert refs == {"ScoreOut", "ScoresOut"}
    schemas = spec["components"]["schemas"]
    assert schemas["ScoreOut"]["required"] == ["score"]
    assert set(schemas["ScoreOut"]["properties"]) == {"score"}
    assert schemas["ScoreOut"]["properties"]["score"]["type"] == "number"
    assert "0 to 5" in schemas["ScoreOut"]["properties"]["score"]["description"]
    assert schemas["ScoresOut"]["properties"]["predictions"]["items"]["$ref"].endswith("/ScoreOut")
    assert "PredictionOut" not in schemas and "PredictionsOut" not in schemas  # no label, no scores
    post = spec["paths"]["/predict"]["post"]
    assert post["summary"].startswith("Score") and '{"score": ...}' in post["description"]
    assert "regression" in schemas["HealthOut"]["properties"]["task"]["enum"]


def test_openapi_of_a_classifier_is_unchanged():
    refs, spec = answer_schemas(create_app(FakeClassifier()))
    assert refs == {"PredictionOut", "PredictionsOut"}
    schemas = spec["components"]["schemas"]
    assert set(schemas["PredictionOut"]["properties"]) == {"label", "scores"}
    assert "ScoreOut" not in schemas
    post = spec["paths"]["/predict"]["post"]
    assert post["summary"] == "Classify one pair or a list of pairs" and '"label"' in post["description"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_schema_fuzzing_of_a_regression_model_finds_no_5xx_and_no_answer_off_the_schema(regressor, mode):
    # As test_fuzz_api does for a classifier, /predict only: the other operations do not depend on the task.
    limits = ServeLimits(max_text_chars=200, max_pairs=8, max_body_bytes=8192, max_wait_ms=1)
    api = schemathesis.openapi.from_asgi("/openapi.json", create_app(regressor, limits))
    [operation] = [op for op in (r.ok() for r in api.get_all_operations()) if op.path == "/predict"]
    seen: Counter = Counter()

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        seen[case.call_and_validate().status_code] += 1

    check()
    if mode is GenerationMode.POSITIVE:
        assert set(seen) == {200} and seen[200] >= 10, seen
    else:
        assert set(seen) <= {400, 413, 415, 422}, seen


# --- batching and faults ------------------------------------------------------------------------------------------


def test_concurrent_score_requests_are_merged_and_each_gets_its_own_score():
    fake = FakeRegressor()
    n = 8
    app = create_app(fake, ServeLimits(max_batch_size=n, max_wait_ms=10_000))

    async def scenario(client):
        return await asyncio.gather(*(client.post("/predict", json=one(premise=f"{i / 2}")) for i in range(n)))

    responses = asyncio.run(run_with_app(app, scenario))
    assert fake.batch_sizes == [n]
    assert [r.json() for r in responses] == [{"score": i / 2} for i in range(n)]


@dataclass
class Odd:
    label: str | None
    scores: dict
    score: float | None


def test_a_score_that_is_not_a_finite_number_fails_that_request_alone():
    class Broken(FakeRegressor):
        def predict(self, pairs, batch_size):
            self.batch_sizes.append(len(pairs))
            return [Odd(None, {}, None if p.premise == "none" else float(p.premise)) for p in pairs]

    fake = Broken()
    app = create_app(fake, ServeLimits(max_batch_size=4, max_wait_ms=10_000))

    async def scenario(client):
        premises = ["1.5", "nan", "none", "inf"]
        return await asyncio.gather(*(client.post("/predict", json=one(premise=p)) for p in premises))

    first, *broken = asyncio.run(run_with_app(app, scenario))
    assert fake.batch_sizes == [4]  # computed together; only the answers that cannot be JSON fail
    assert first.json() == {"score": 1.5}
    for response in broken:
        assert "no finite score" in assert_error_shape(response, 500)["message"]


# --- the page's info -------------------------------------------------------------------------------------------


def test_the_page_is_told_the_task_and_the_range(client):
    html = client.get("/").text
    assert model_info(html) == {"task": "regression", "score_range": [0, 5], "gauge": [0, 5]}
    assert 'id="gauge"' in html and "유사도" in html
    with TestClient(create_app(FakeClassifier())) as c:
        assert model_info(c.get("/").text) == {"task": "classification"}


def test_a_page_without_its_info_block_is_a_clear_error():
    html = f"<html>{INFO_BLOCK}</html>"
    assert render_page(html, None) == html  # a classifier's page is page.html as it is
    assert model_info(render_page(html, ScoreRange(1, 4)))["gauge"] == [1, 4]
    with pytest.raises(RuntimeError, match="model-info"):
        render_page("<html></html>", ScoreRange(0, 5))
