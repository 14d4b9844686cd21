"""Hostile requests: the OpenAPI schema fuzzed with schemathesis, raw sockets, and Unicode on the wire.

No request may give a 5xx or crash the server; every answer conforms to the schema where one is
declared; bodies over the limit are refused from their headers, before being read.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from korpair.inference import Predictor
from korpair.serve import ServeLimits, create_app, serve_in_background

# Small limits: generated bodies stay small, and the limits are in the schema that is fuzzed.
LIMITS = ServeLimits(max_text_chars=200, max_pairs=8, max_body_bytes=8192, max_wait_ms=1)
OPERATIONS = {"POST /predict", "GET /health", "GET /labels"}


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    import torch

    # One intra-op thread: the tiny model gains nothing from two, and on a busy 2-core machine the
    # second thread makes each call 10x slower (1 ms -> 10 ms median, 170 ms worst).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Predictor.from_pretrained(tiny_model_dir, device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def api_schema(predictor):
    # In process over ASGI: schemathesis runs the app's lifespan (the micro-batcher) in its own event loop.
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(predictor, LIMITS))


@pytest.fixture(scope="module")
def server(predictor):
    with serve_in_background(predictor, port=0, limits=LIMITS) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


# --- schemathesis ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_schema_fuzzing_finds_no_5xx_and_no_answer_off_the_schema(api_schema, mode):
    # call_and_validate runs every default check: no 5xx, status code, content type and body as declared,
    # schema-valid data accepted (positive mode), schema-invalid data refused with a 4xx (negative mode).
    # (schemathesis.pytest.from_fixture would be the usual way, but it fails under pytest 9: no Node._nodeid.)
    operations = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in api_schema.get_all_operations())}
    assert set(operations) == OPERATIONS, "a new endpoint? add it to OPERATIONS"
    statuses: dict[str, Counter] = {}
    for name, operation in operations.items():
        if mode is GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing in a parameterless GET to make invalid
        seen = statuses[name] = Counter()

        @settings(max_examples=50, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            seen[case.call_and_validate().status_code] += 1

        check()
    if mode is GenerationMode.POSITIVE:
        assert set(statuses["POST /predict"]) == {200} and statuses["POST /predict"][200] >= 10, statuses
    else:
        assert set(statuses["POST /predict"]) <= {400, 413, 415, 422}, statuses


def test_the_schema_tells_which_texts_are_blank(http):
    # Random generation rarely hits a whitespace-only text, so check every whitespace character here:
    # the schema's pattern must accept exactly the texts that the server accepts.
    properties = http.get("openapi.json").json()["components"]["schemas"]["PairIn"]["properties"]
    pattern = re.compile(properties["premise"]["pattern"])
    assert properties["hypothesis"]["pattern"] == pattern.pattern
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    for c in spaces + ["\u200b", "\u2060", "\ufeff", "\u180e", "\u3164", "\x00", "\x1b", "가"]:
        status = http.post("predict", json={"premise": c * 3, "hypothesis": "날씨"}).status_code
        assert status == (200 if pattern.search(c * 3) else 422), (hex(ord(c)), status)


def test_schemathesis_cli_on_loopback_finds_no_issue(server, tmp_path):
    # The CLI adds the phases the pytest API lacks: the schema's own examples, and "coverage" (boundary
    # values: max_length + 1, missing fields, wrong types, ...). Bounded: 50 examples per operation.
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("the schemathesis CLI is not installed beside this Python")
    command = [str(st), "run", f"{server.url}openapi.json", "--max-examples", "50", "--checks", "all",
               "--mode", "all", "--phases", "examples,coverage,fuzzing", "--no-color", "--request-timeout", "10",
               "--report-dir", str(tmp_path), "--generation-database", "none"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-4000:]


# --- raw sockets ----------------------------------------------------------------------------------------------


def raw_exchange(port: int, request: bytes, wait_s: float = 5.0) -> tuple[int, dict[str, str], bytes, bool, float]:
    """Send ``request`` as is; return status, headers, body, whether the server then closed, and seconds taken."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a response: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the middle of the response"
            body += chunk
        seconds = time.monotonic() - started
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return int(status_line.split()[1]), headers, body, closed, seconds


def test_a_huge_content_length_is_refused_at_once_without_reading_the_body(server):
    # 100 MB announced, 13 bytes sent: the 413 must come from the headers, not after waiting for the body.
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 104857600\r\n\r\n{\"premise\": \"")
    status, headers, body, closed, seconds = raw_exchange(server.port, request)
    assert status == 413 and seconds < 2
    assert "over 8192 bytes" in json.loads(body)["error"]["message"]
    assert closed and headers.get("connection") == "close"  # the rest of the body is not worth reading


def test_the_server_goes_on_after_refusing_bodies(server, http):
    test_a_huge_content_length_is_refused_at_once_without_reading_the_body(server)
    test_a_chunked_body_is_refused_once_it_passes_the_limit(server)
    assert http.post("predict", json={"premise": "비가 온다", "hypothesis": "맑다"}).status_code == 200


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server):
    # No Content-Length: bytes are counted as they come. 9 KiB sent (over 8 KiB) and the body left unfinished.
    chunks = b"".join(b"400\r\n" + b"x" * 1024 + b"\r\n" for _ in range(9))
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    status, headers, body, closed, seconds = raw_exchange(server.port, request)
    assert status == 413 and seconds < 2 and closed
    assert json.loads(body)["error"]["message"] == "request body over 8192 bytes"


@pytest.mark.parametrize("content_length", [b"-1", b"abc", b"1e3", b"99999999999999999999999999", b"12, 13"])
def test_a_malformed_content_length_is_a_400(server, content_length):
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + content_length + b"\r\n\r\n{}")
    status, _, _, _, seconds = raw_exchange(server.port, request)
    assert status == 400 and seconds < 2


# --- Unicode on the wire ---------------------------------------------------------------------------------------

# Request bodies written as raw JSON text, so that escapes such as "\ud800" reach the server as sent.
ACCEPTED_TEXTS = {
    "emoji and ZWJ sequences": r"오늘 😀👍🏽🇰🇷 👨\u200d👩\u200d👧",
    "escaped surrogate pair (one emoji)": r"\ud83d\ude00 좋다",
    "conjoining jamo (NFD)": "\u1112\u1161\u11ab\u1100\u116e\u11a8",
    "jamo with combining tone marks": "\u1100\u1161\u302e\u302f",
    "zero-width characters": r"비가\u200b온다\u200c\u200d\u2060\ufeff",
    "right to left and bidi overrides": "مرحبا שלום \u202e비가\u202c \u2067x\u2069",
    "NUL and control characters": r"a\u0000b\u0007c\u001b[31m",
    "C1 controls and line separators": r"\u0085\u2028\u2029끝",
    "noncharacters and the last code point": r"\ufffe\uffff\udbff\udfff 끝",
    "astral CJK": "𠀀𪚥 漢字",
}
REFUSED_TEXTS = {
    "lone high surrogate": r"\ud800",
    "lone low surrogate": r"앞\udc00뒤",
    "reversed surrogate pair": r"\ude00\ud83d",
    "only ideographic spaces": r"\u3000\u3000",
}


@pytest.mark.parametrize("name", ACCEPTED_TEXTS, ids=list(ACCEPTED_TEXTS))
def test_unicode_edge_cases_are_answered(http, predictor, name):
    text = ACCEPTED_TEXTS[name]
    for body in (f'{{"premise": "{text}", "hypothesis": "날씨가 맑다"}}',
                 f'{{"pairs": [{{"premise": "비", "hypothesis": "{text}"}}]}}'):
        response = http.post("predict", content=body.encode(), headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        answer = response.json()
        prediction = answer["predictions"][0] if "predictions" in answer else answer
        assert prediction["label"] in predictor.labels


@pytest.mark.parametrize("name", REFUSED_TEXTS, ids=list(REFUSED_TEXTS))
def test_texts_that_are_not_text_get_a_clean_422(http, name):
    body = f'{{"pairs": [{{"premise": "비", "hypothesis": "날씨"}}, {{"premise": "{REFUSED_TEXTS[name]}", "hypothesis": "b"}}]}}'
    response = http.post("predict", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    response.content.decode("utf-8")  # the error itself is valid UTF-8: no surrogate echoed back
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["pairs.1.premise"]


@pytest.mark.parametrize("raw", [
    b'{"premise": "\xff\xfe", "hypothesis": "b"}',          # not UTF-8 at all
    b'{"premise": "\xc0\xaf", "hypothesis": "b"}',          # overlong encoding of "/"
    b'{"premise": "\xed\xa0\x80", "hypothesis": "b"}',      # a surrogate encoded as UTF-8 (CESU-8)
    b'{"premise": "\xea\xb0", "hypothesis": "b"}',          # 가 cut in the middle
    '{"premise": "가", "hypothesis": "나"}'.encode("cp949"),
    b"[" * 5000,
], ids=["0xff", "overlong", "cesu-8", "truncated", "cp949", "deep nesting"])
def test_bodies_that_are_not_utf8_json_get_a_clean_4xx(http, raw):
    response = http.post("predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["message"]


def test_utf16_json_with_a_byte_order_mark_is_understood(http):
    # Python's json (which FastAPI uses) detects UTF-16 and UTF-32 from their first bytes, as RFC 4627 did.
    for encoding in ("utf-16", "utf-16-be", "utf-32"):
        body = '{"premise": "비가 온다", "hypothesis": "날씨가 맑다"}'.encode(encoding)
        response = http.post("predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, (encoding, response.text)


def test_odd_paths_methods_and_headers_get_a_clean_4xx(http):
    for path in ("/%ED%A0%80", "/predict%00", "/%F0%9F%98%80", "/predict/../health/../../x"):
        assert http.get(path).status_code in (404, 405), path
    assert http.request("PATCH", "/predict").status_code == 405
    # Header bytes outside ASCII (read as latin-1 by the server).
    response = http.post("/predict", content=b"{}", headers={b"content-type": b"application/json; charset=\xea"})
    assert response.status_code in (400, 415, 422), response.text
    response = http.post("/predict", content=b"{}", headers={b"content-type": b"\xea\xb0\x80/json"})
    assert response.status_code == 415, response.text
    assert http.get("/health").json()["status"] == "ok"
