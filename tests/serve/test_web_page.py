"""The demo page and the API docs in a real headless Chromium, against a real server on loopback.

Needs Debian's Chromium: ``apt-get install -y chromium`` (gives /usr/bin/chromium); Playwright
drives it, so no browser download is needed. Screenshots go to /tmp/korpair_page*.png.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from korpair.inference import Predictor
from korpair.serve import ServeLimits, serve_in_background
from korpair.types import Prediction, ScoreRange

SCREENSHOTS = Path(tempfile.gettempdir())
KOREAN_NAMES = {"entailment": "참", "contradiction": "거짓", "neutral": "중립"}
PREMISE, HYPOTHESIS = "민수는 어제 공원에서 자전거를 탔다", "민수는 집에 있지 않았다"


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    predictor = Predictor.from_pretrained(tiny_model_dir, device="cpu")
    with serve_in_background(predictor, port=0, limits=ServeLimits(max_text_chars=200, max_wait_ms=1)) as s:
        yield s


@pytest.fixture
def page_of(browser):
    """``page_of(**context_options)`` -> (page, urls it requested); every page is closed after the test."""
    contexts = []

    def open_page(**options):
        context = browser.new_context(**options)
        contexts.append(context)
        requested: list[str] = []
        context.on("request", lambda request: requested.append(request.url))
        return context.new_page(), requested

    yield open_page
    for context in contexts:
        context.close()


def assert_only_loopback(urls: list[str]) -> None:
    outside = [u for u in urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
               and urlparse(u).hostname != "127.0.0.1"]
    assert not outside, f"the page reached outside 127.0.0.1: {outside}"
    assert urls, "no request recorded"


def read_percents(page) -> dict[str, int]:
    bars = page.locator("#bars .bar")
    return {bars.nth(i).get_attribute("data-label"): int(bars.nth(i).locator(".pct").inner_text().rstrip("%"))
            for i in range(bars.count())}


def submit_and_wait(page, state: str = "done") -> None:
    page.click("#submit")
    page.wait_for_selector(f"#results[data-state={state}]", timeout=15_000)


def test_page_shows_percentages_that_match_the_api(server, page_of):
    page, requested = page_of(viewport={"width": 1100, "height": 760})
    page.goto(server.url)
    page.wait_for_selector('#bars .bar[data-label="entailment"]')
    assert page.locator("#submit").inner_text() == "입력"
    page.locator("#premise").press_sequentially(PREMISE)  # typed key by key, like a person
    page.fill("#hypothesis", HYPOTHESIS)
    submit_and_wait(page)

    percents = read_percents(page)
    assert list(percents) == ["entailment", "contradiction", "neutral"]  # 참, 거짓, 중립
    assert abs(sum(percents.values()) - 100) <= 1
    scores = httpx.post(server.url + "predict", json={"premise": PREMISE, "hypothesis": HYPOTHESIS}).json()
    for label, pct in percents.items():
        assert abs(pct - 100 * scores["scores"][label]) <= 1, (label, pct, scores)
        name = page.locator(f'.bar[data-label="{label}"] .name').inner_text()
        assert name == KOREAN_NAMES[label]
    assert page.locator(".bar.top").get_attribute("data-label") == scores["label"]
    assert KOREAN_NAMES[scores["label"]] in page.inner_text("#verdict")
    assert page.locator("#error").is_hidden()
    page.screenshot(path=str(SCREENSHOTS / "korpair_page.png"), full_page=True)
    assert_only_loopback(requested)


def test_page_fits_a_phone(server, page_of):
    page, requested = page_of(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True,
                              has_touch=True)
    page.goto(server.url)
    page.fill("#premise", "할머니가 시장에서 사과를 샀다")
    page.fill("#hypothesis", "할머니는 과일을 샀다")
    page.tap("#submit")
    page.wait_for_selector("#results[data-state=done]", timeout=15_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    premise, hypothesis = page.locator("#premise").bounding_box(), page.locator("#hypothesis").bounding_box()
    assert hypothesis["y"] >= premise["y"] + premise["height"]  # stacked, not side by side
    assert abs(sum(read_percents(page).values()) - 100) <= 1
    page.screenshot(path=str(SCREENSHOTS / "korpair_page_mobile.png"), full_page=True)
    assert_only_loopback(requested)


def test_page_shows_api_errors(server, page_of):
    page, requested = page_of()
    page.goto(server.url)
    page.fill("#premise", "가" * 201)  # the server allows 200
    page.fill("#hypothesis", "나")
    submit_and_wait(page, "error")
    error = page.locator("#error")
    assert error.is_visible()
    assert "422" in error.inner_text() and "premise" in error.inner_text()

    page.fill("#premise", "")  # caught on the page, before any request
    page.click("#submit")
    assert "전제와 가설" in error.inner_text()

    page.fill("#premise", PREMISE)  # and a good request clears the error
    submit_and_wait(page)
    assert error.is_hidden()
    assert_only_loopback(requested)


@dataclass
class Answer:
    label: str
    scores: dict


class YesNo:
    labels = ("yes", "no")

    def predict(self, pairs, batch_size):
        return [Answer("no", {"yes": 1 / 3, "no": 2 / 3}) for _ in pairs]


def test_other_label_sets_and_a_stopped_server(page_of):
    page, requested = page_of()
    server = serve_in_background(YesNo(), port=0)
    try:
        page.goto(server.url)
        page.fill("#premise", PREMISE)
        page.fill("#hypothesis", HYPOTHESIS)
        submit_and_wait(page)
        assert read_percents(page) == {"yes": 33, "no": 67}
        assert page.locator('.bar[data-label="yes"] .name').inner_text() == "yes"  # raw names
    finally:
        server.stop()
    submit_and_wait(page, "error")
    assert page.locator("#error").is_visible()
    assert "서버에 연결할 수 없습니다" in page.locator("#error").inner_text()
    assert_only_loopback(requested)


def test_api_docs_render_offline(server, page_of):
    page, requested = page_of()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server.url + "docs")
    page.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=15_000)
    assert "/predict" in page.inner_text(".swagger-ui")
    assert not errors, errors
    page.screenshot(path=str(SCREENSHOTS / "korpair_docs.png"))
    assert_only_loopback(requested)


# --- a regression model: the similarity gauge -------------------------------------------------------------------

SIMILAR = ("할머니가 시장에서 사과를 샀다", "할머니는 시장에서 과일을 샀다")


@pytest.fixture(scope="module")
def sts_server(tiny_regressor_dir):
    predictor = Predictor.from_pretrained(tiny_regressor_dir, device="cpu")
    with serve_in_background(predictor, port=0, limits=ServeLimits(max_wait_ms=1)) as s:
        yield s


def fill_fraction(page) -> float:
    track, fill = page.locator("#gauge .track").bounding_box(), page.locator("#gauge .fill").bounding_box()
    return fill["width"] / track["width"]


def wait_for_gauge(page) -> None:
    # The fill's width animates (.35 s): read it once it has settled.
    page.wait_for_function("""() => { const f = document.querySelector('#gauge .fill');
        return f.getAnimations().length === 0 && getComputedStyle(f).width !== ''; }""", timeout=5_000)


def test_regression_page_shows_a_similarity_gauge_that_matches_the_api(sts_server, page_of):
    page, requested = page_of(viewport={"width": 1100, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(sts_server.url)
    page.wait_for_selector("#gauge", state="visible")
    assert page.locator("#gauge .name").inner_text() == "유사도"
    assert page.locator("#bars, .bar").count() == 0  # no three-bar block
    assert "유사도" in page.inner_text("h1") or "유사도" in page.title()
    assert page.locator("#gauge .scale .low .end").inner_text() == "0"
    assert page.locator("#gauge .scale .high .end").inner_text() == "5"
    page.fill("#premise", SIMILAR[0])
    page.fill("#hypothesis", SIMILAR[1])
    submit_and_wait(page)
    wait_for_gauge(page)

    score = httpx.post(sts_server.url + "predict", json={"premise": SIMILAR[0], "hypothesis": SIMILAR[1]}).json()
    shown = page.locator("#gauge .value").inner_text()
    assert re.fullmatch(r"-?\d+\.\d\d", shown), shown  # two decimals
    assert abs(float(shown) - score["score"]) <= 0.005 + 1e-9, (shown, score)
    assert page.locator("#gauge .of").inner_text() == "/ 5"
    assert page.inner_text("#verdict").startswith("예측: ")  # the STS scale's words for the score
    assert 0 < score["score"] < 5  # inside the range: the fill is proportional
    assert fill_fraction(page) == pytest.approx(score["score"] / 5, abs=0.01)
    assert page.locator("#gauge").get_attribute("role") == "meter"
    assert page.locator("#error").is_hidden()
    assert not errors, errors
    page.screenshot(path=str(SCREENSHOTS / "korpair_page_sts.png"), full_page=True)
    assert_only_loopback(requested)


def test_regression_page_fits_a_phone(sts_server, page_of):
    page, requested = page_of(viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True,
                              has_touch=True)
    page.goto(sts_server.url)
    page.fill("#premise", SIMILAR[0])
    page.fill("#hypothesis", SIMILAR[1])
    page.tap("#submit")
    page.wait_for_selector("#results[data-state=done]", timeout=15_000)
    wait_for_gauge(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    gauge, value = page.locator("#gauge").bounding_box(), page.locator("#gauge .value").bounding_box()
    assert gauge["x"] >= 0 and gauge["x"] + gauge["width"] <= 360
    assert value["x"] + value["width"] <= gauge["x"] + gauge["width"] + 0.5  # the number is not cut off
    assert page.locator("#gauge .scale .high .end").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "korpair_page_sts_mobile.png"), full_page=True)
    assert_only_loopback(requested)


class Echoed:
    """A regression model whose score is the number in the premise: any score, in range or not."""

    labels, task, score_range = ("score",), "regression", ScoreRange(0, 5)

    def predict(self, pairs, batch_size):
        return [Prediction(None, {}, score=float(p.premise)) for p in pairs]


@pytest.mark.parametrize(("score", "shown", "fraction", "words"), [
    ("3.27", "3.27", 0.654, "대체로 비슷함"), ("5.7", "5.70", 1.0, "같은 뜻"), ("-0.304", "-0.30", 0.0, "관련 없음"),
    ("0", "0.00", 0.0, "관련 없음"), ("4.499", "4.50", 0.8998, "같은 뜻"),
    ("4.494", "4.49", 0.8988, "거의 같은 뜻"), ("0.5", "0.50", 0.1, "주제만 같음"),
])
def test_gauge_clamps_the_drawing_not_the_number(page_of, score, shown, fraction, words):
    page, requested = page_of()
    with serve_in_background(Echoed(), port=0) as server:
        page.goto(server.url)
        page.fill("#premise", score)
        page.fill("#hypothesis", "아무 문장")
        submit_and_wait(page)
        wait_for_gauge(page)
        assert page.locator("#gauge .value").inner_text() == shown
        assert fill_fraction(page) == pytest.approx(fraction, abs=0.01)
        assert page.locator("#gauge").get_attribute("aria-valuetext") == shown
        assert page.inner_text("#verdict") == f"예측: {words}"
    assert_only_loopback(requested)


def test_regression_page_asks_for_two_sentences(sts_server, page_of):
    page, _ = page_of()
    page.goto(sts_server.url)
    page.fill("#premise", SIMILAR[0])
    page.click("#submit")
    assert "두 문장을 모두" in page.locator("#error").inner_text()
    assert page.locator('label[for="premise"]').inner_text().startswith("문장 1")
