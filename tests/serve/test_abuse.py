"""The server under abuse: abandoned requests, a full queue, deadlines, idle and half-sent connections, a
file-descriptor limit, foreign Host names, bodies the JSON parser chokes on, and HEAD.

Real servers on 127.0.0.1 (``serve_in_background``, or a subprocess where a process limit is needed) with a
fake classifier, so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from korpair.serve import ServeLimits, create_app, serve_in_background
from korpair.types import Prediction

LABELS = ("entailment", "neutral", "contradiction")


class Recorder:
    """A fake classifier: answers each pair with its premise as the label, records every premise it is given,
    sleeps ``call_s`` per call (a busy model) and, with ``hold=True``, waits for ``release`` first."""

    labels = LABELS

    def __init__(self, call_s: float = 0.0, hold: bool = False) -> None:
        self.call_s = call_s
        self.premises: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def predict(self, pairs, batch_size):
        self.premises += [p.premise for p in pairs]
        self.entered.set()
        assert self.release.wait(10), "the test never released the fake classifier"
        time.sleep(self.call_s)
        return [Prediction(p.premise, {"entailment": 0.5, "neutral": 0.25, "contradiction": 0.25}) for p in pairs]


def one(premise: str = "비가 온다", hypothesis: str = "날씨가 맑다") -> dict:
    return {"premise": premise, "hypothesis": hypothesis}


def http_request(method: str, path: str, body: bytes = b"", host: str = "127.0.0.1", close: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open after ``timeout_s``."""
    sock.settimeout(timeout_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_response(sock: socket.socket, timeout_s: float = 5) -> bytes:
    """One whole response (head and Content-Length body) from a keep-alive connection."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def closed_within(socks: list[socket.socket], timeout_s: float, enough: int | None = None) -> int:
    """How many of ``socks`` the server closes within ``timeout_s`` (a reset counts: it closed with bytes unread)."""
    enough = len(socks) if enough is None else enough
    closed = 0
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while closed < enough and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                try:
                    data = key.fileobj.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    selector.unregister(key.fileobj)
                    closed += 1
    return closed


async def run_with_app(app, scenario, base_url: str = "http://127.0.0.1:8000"):
    """Run ``scenario(client)`` against ``app`` in this event loop, lifespan included."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30) as client:
            return await scenario(client)


async def wait_for_queue(client, depth: int) -> None:
    for _ in range(2000):
        if (await client.get("/health")).json()["queue_depth"] == depth:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the queue never reached {depth} pairs")


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


@pytest.fixture(params=["httptools", "h11"])
def http_protocol(request, monkeypatch) -> str:
    """The connection guards on both protocols a server may run: httptools (installed with korpair), h11 without."""
    from korpair.serve import connections

    if request.param == "h11":
        monkeypatch.setattr(connections, "HttpToolsProtocol", None)
    assert request.param in connections.guarded_protocol(1, 1).__name__.lower()
    return request.param


# --- abandoned work, a bounded queue, deadlines -----------------------------------------------------------


def test_abandoned_requests_are_not_computed_and_the_next_client_is_answered_promptly():
    model = Recorder(call_s=0.2)
    abandoned = 20
    with serve_in_background(model, port=0, limits=ServeLimits(max_batch_size=64, max_wait_ms=0)) as server:
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(abandoned)]
        for r, sock in enumerate(socks):
            body = json.dumps({"pairs": [one(f"gone-{r}-{i}") for i in range(64)]}).encode()
            sock.sendall(http_request("POST", "/predict", body))
        for sock in socks:
            sock.close()
        start = time.monotonic()
        answer = httpx.post(server.url + "predict", json=one("honest"), timeout=30)
        waited = time.monotonic() - start
    assert answer.status_code == 200 and answer.json()["label"] == "honest"
    computed = [p for p in model.premises if p.startswith("gone")]
    # The model may have taken the first request before its client left; nothing after that.
    assert len(computed) <= 2 * 64, f"{len(computed)} pairs computed for clients that had gone"
    assert waited < 1.5, f"an honest request waited {waited:.1f} s behind abandoned ones"


def test_a_full_queue_answers_503_with_retry_after():
    model = Recorder(hold=True)
    app = create_app(model, ServeLimits(max_queue_pairs=4, max_batch_size=4, max_wait_ms=0))

    async def scenario(client):
        first = asyncio.create_task(client.post("/predict", json=one("first")))
        assert await asyncio.to_thread(model.entered.wait, 10)
        queued = [asyncio.create_task(client.post("/predict", json={"pairs": [one("queued")] * 2})) for _ in range(2)]
        await wait_for_queue(client, 4)
        refused = await client.post("/predict", json=one("late"))
        model.release.set()
        return refused, await first, await asyncio.gather(*queued)

    refused, first, queued = asyncio.run(run_with_app(app, scenario))
    error = assert_error(refused, 503)
    assert "max_queue_pairs=4" in error["message"] and "queue" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert first.status_code == 200 and [r.status_code for r in queued] == [200, 200]
    assert "late" not in model.premises


def test_a_request_larger_than_the_queue_is_taken_when_the_queue_is_empty():
    with TestClient(create_app(Recorder(), ServeLimits(max_queue_pairs=2)), base_url="http://localhost") as c:
        assert c.post("/predict", json={"pairs": [one()] * 3}).status_code == 200


def test_a_request_past_its_deadline_gets_503_and_is_never_computed():
    model = Recorder(hold=True)
    app = create_app(model, ServeLimits(request_timeout_s=0.5, max_wait_ms=0))

    async def scenario(client):
        first = asyncio.create_task(client.post("/predict", json=one("first")))
        assert await asyncio.to_thread(model.entered.wait, 10)
        start = time.monotonic()
        second = await client.post("/predict", json=one("second"))
        waited = time.monotonic() - start
        health = (await client.get("/health")).json()
        model.release.set()
        return second, waited, health, await first

    second, waited, health, first = asyncio.run(run_with_app(app, scenario))
    error = assert_error(second, 503)
    assert "request_timeout_s=0.5" in error["message"] and int(second.headers["retry-after"]) >= 1
    assert 0.4 <= waited < 3
    assert health["queue_depth"] == 0, "the late request still holds its place in the queue"
    assert first.status_code == 503  # it too waited past its deadline (in the model): answered, not left hanging
    assert model.premises == ["first"]


def test_a_body_that_never_arrives_gets_408_and_the_connection_is_closed(http_protocol):
    with serve_in_background(Recorder(), port=0, limits=ServeLimits(request_timeout_s=0.5)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        head = http_request("POST", "/predict", b"x" * 100)[:-100]
        sock.sendall(head + b'{"premise": ')
        answer = read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request_timeout_s=0.5" in answer


# --- idle connections ------------------------------------------------------------------------------------------


def test_connections_that_never_finish_their_headers_are_closed_after_the_header_timeout(http_protocol):
    with serve_in_background(Recorder(), port=0, limits=ServeLimits(header_timeout_s=0.5)) as server:
        partial = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
        for sock in partial:
            sock.sendall(b"GET /hea")
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
        # A keep-alive connection that got one answer, then starts a request it never finishes.
        kept = socket.create_connection(("127.0.0.1", server.port))
        kept.sendall(http_request("GET", "/health"))
        assert read_response(kept).startswith(b"HTTP/1.1 200 ")
        kept.sendall(b"GET /hea")
        assert httpx.get(server.url + "health", timeout=5).status_code == 200  # honest clients still served
        idle = [*partial, *silent, kept]
        closed = closed_within(idle, 3)
    assert closed == len(idle), f"{len(idle) - closed} idle connections still open 3 s after the header timeout"


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_s(http_protocol):
    with serve_in_background(Recorder(), port=0, limits=ServeLimits(keep_alive_s=0.3)) as server:
        kept = socket.create_connection(("127.0.0.1", server.port))
        kept.sendall(http_request("GET", "/health"))
        assert read_response(kept).startswith(b"HTTP/1.1 200 ")
        assert closed_within([kept], 3) == 1


def test_idle_connections_do_not_keep_honest_clients_out(http_protocol):
    limits = ServeLimits(max_connections=20, header_timeout_s=60)
    with serve_in_background(Recorder(), port=0, limits=limits) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
        for sock in idle:
            sock.sendall(b"GET /hea")
        for _ in range(5):
            assert httpx.get(server.url + "health", timeout=5).status_code == 200
        closed = closed_within(idle, 2, enough=40)
    assert closed >= 40, f"only {closed} of 60 idle connections were closed to keep within max_connections=20"


def test_a_keep_alive_client_outlasts_newer_connections_that_never_sent_a_request(http_protocol):
    # Under a flood, the next request of a keep-alive client may wait unread, so that its connection looks
    # idle (and idle the longest): the flood's connections must go first.
    with serve_in_background(Recorder(), port=0, limits=ServeLimits(max_connections=5, header_timeout_s=60)) as server:
        kept = socket.create_connection(("127.0.0.1", server.port))
        kept.sendall(http_request("GET", "/health"))
        assert read_response(kept).startswith(b"HTTP/1.1 200 ")
        flood = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(15)]
        for sock in flood:
            sock.sendall(b"GET /hea")
        assert closed_within(flood, 2, enough=11) >= 11
        kept.sendall(http_request("GET", "/health"))
        assert read_response(kept).startswith(b"HTTP/1.1 200 ")


FD_LIMITED_SERVER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])))
from korpair.serve import ServeLimits, run_server
from korpair.types import Prediction

class Fixed:
    labels = ("yes", "no")
    def predict(self, pairs, batch_size):
        return [Prediction("yes", {"yes": 1.0, "no": 0.0}) for _ in pairs]

run_server(Fixed(), port=0, limits=ServeLimits(header_timeout_s=60))
"""


def test_out_of_file_descriptors_the_server_still_serves_and_says_so_once(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", FD_LIMITED_SERVER, "128"], stdout=out,
                                stderr=subprocess.STDOUT)
    idle: list[socket.socket] = []
    try:
        url = None
        for _ in range(300):
            if match := re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text()):
                url = match.group(0)
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert url, log.read_text()
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for _ in range(300):  # more than the 128 files the server may open
            idle.append(socket.create_connection(("127.0.0.1", port)))
            idle[-1].sendall(b"GET /hea")
        time.sleep(1.5)
        start = time.monotonic()
        answer = httpx.get(url + "health", timeout=20)
        waited = time.monotonic() - start
        time.sleep(1.5)
    finally:
        for sock in idle:
            sock.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    text = log.read_text()
    assert answer.status_code == 200 and waited < 10, (answer.status_code, waited)
    assert text.count("out of system resource") <= 1, text[-3000:]
    assert text.count("instead of max_connections") == 1, text[-3000:]  # the lowered limit, said once at the start


def test_accept_errors_are_logged_once_not_per_accept(caplog):
    from korpair.serve.connections import QuietAcceptErrors

    loop = asyncio.new_event_loop()
    try:
        handler = QuietAcceptErrors()
        error = OSError(24, "Too many open files")
        for _ in range(500):
            handler(loop, {"message": "socket.accept() out of system resource", "exception": error})
    finally:
        loop.close()
    records = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(records) == 1 and "Too many open files" in records[0].getMessage()


# --- Host names and headers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    limits = ServeLimits(max_wait_ms=1)
    with serve_in_background(Recorder(), port=0, limits=limits) as running:
        yield running


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "LocalHost", "127.0.0.1", "127.0.0.1:{port}",
                                  "[::1]", "[::1]:{port}"])
def test_loopback_host_names_are_served(server, host):
    response = httpx.get(server.url + "health", headers={"host": host.format(port=server.port)})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:{port}", "127.0.0.1.evil.example.com",
                                  "localhost.evil.example.com", "0.0.0.0", "[::2]"])
def test_other_host_names_are_refused_on_loopback(server, host):
    response = httpx.post(server.url + "predict", json=one(), headers={"host": host.format(port=server.port)})
    error = assert_error(response, 421)
    assert "Host" in error["message"] and "allowed_hosts" in error["message"]
    assert host.format(port=server.port).split(":")[0] in error["message"]


def test_allowed_hosts_extend_the_loopback_names():
    limits = ServeLimits(allowed_hosts=["korpair.example.org", "*.lab.example"])
    with serve_in_background(Recorder(), port=0, limits=limits) as running:
        status = {host: httpx.get(running.url + "health", headers={"host": host}).status_code
                  for host in ("korpair.example.org", "gpu1.lab.example:8000", "localhost", "evil.example.com",
                               "lab.example.evil.example.com")}
    assert status == {"korpair.example.org": 200, "gpu1.lab.example:8000": 200, "localhost": 200,
                      "evil.example.com": 421, "lab.example.evil.example.com": 421}


def test_beyond_loopback_any_host_is_served_unless_allowed_hosts_says_otherwise():
    # A request that arrived on a non-loopback address: the server listens beyond loopback (e.g. 0.0.0.0).
    async def status(app) -> int:
        async def scenario(client):
            return (await client.get("/health", headers={"host": "nlp-box.internal"})).status_code
        return await run_with_app(app, scenario, base_url="http://192.0.2.7:8000")

    assert asyncio.run(status(create_app(Recorder()))) == 200
    assert asyncio.run(status(create_app(Recorder(), ServeLimits(allowed_hosts=["nlp-box.internal"])))) == 200
    assert asyncio.run(status(create_app(Recorder(), ServeLimits(allowed_hosts=["other.internal"])))) == 421


@pytest.mark.parametrize("path", ["/", "/docs", "/health"])
def test_pages_cannot_be_framed_or_sniffed(server, path):
    headers = httpx.get(server.url + path.lstrip("/")).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/", "/health"])
def test_head_is_answered_like_get_without_a_body(server, path):
    get = httpx.get(server.url + path.lstrip("/"))
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(http_request("HEAD", path, close=True))
    answer = read_until_closed(sock, 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert body == b""
    assert f"content-type: {get.headers['content-type']}".encode() in head.lower()


# --- bodies the JSON parser refuses -------------------------------------------------------------------------------

BAD_BODIES = {
    "nested too deep": (b'{"premise": ' + b"[" * 5000 + b"]" * 5000 + b', "hypothesis": "a"}', "nested"),
    "number too long": (b'{"premise": ' + b"7" * 5000 + b', "hypothesis": "a"}', "digits"),
    "not UTF-8": ('{"premise": "caf\xe9", "hypothesis": "a"}'.encode("latin-1"), "UTF-8"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_bodies_the_json_parser_refuses_say_what_was_wrong(case):
    body, condition = BAD_BODIES[case]
    with TestClient(create_app(Recorder()), base_url="http://localhost") as c:
        response = c.post("/predict", content=body, headers={"content-type": "application/json"})
    error = assert_error(response, 400)
    assert condition in error["message"], error
    assert error["fields"] and error["fields"][0]["field"] == "body" and condition in error["fields"][0]["problem"]


# --- the command line ------------------------------------------------------------------------------------------------


def test_every_limit_is_a_serve_option_of_the_same_name(tmp_path):
    from korpair.cli import app

    serve = typer.main.get_command(app).commands["serve"]
    assert set(ServeLimits.model_fields) <= {param.name for param in serve.params}
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--max-queue-pairs", "0"])
    assert result.exit_code == 2, result.output
    assert "max_queue_pairs" in result.output and "greater than or equal to 1" in result.output, result.output
