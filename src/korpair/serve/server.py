"""Run the app with uvicorn: in the foreground (``run_server``) or in a thread for notebooks.

Example::

    run_server("runs/sample/model")                       # blocks; Ctrl+C stops it
    server = serve_in_background("runs/sample/model")     # returns at once (Jupyter, Colab)
    server.url  # 'http://127.0.0.1:8000/'
    server.stop()
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn

from korpair.errors import ConfigError
from korpair.serve.app import create_app
from korpair.serve.batcher import Classifier, load_on_model_thread
from korpair.serve.connections import QuietAcceptErrors, fit_connection_limit, guarded_protocol
from korpair.serve.limits import ServeLimits

log = logging.getLogger(__name__)


def run_server(model_dir: str | Path | Classifier, host: str = "127.0.0.1", port: int = 8000,
               limits: ServeLimits | None = None, device: str | None = None, precision: str = "32",
               backend: str = "auto", calibrated: bool = True) -> None:
    """Load the model once, print the URL to open, and serve until Ctrl+C.

    ``model_dir`` is a model folder (or an already loaded ``Predictor``; a folder is
    loaded on the thread that will call the model, which PyTorch on a CPU runs faster,
    see ``batcher.load_on_model_thread``). A host other than loopback (e.g. ``0.0.0.0``)
    lets other machines in, with no authentication: a warning says so.

    Example::

        run_server("runs/sample/model", port=8080, limits=ServeLimits(max_pairs=16))
        # korpair: serving runs/sample/model on http://127.0.0.1:8080/  (API docs: http://127.0.0.1:8080/docs)
    """
    classifier = _load(model_dir, device, precision, calibrated, backend)
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    _announce(model_dir, host, port, blocking=True)
    limits = limits or ServeLimits()
    server = _Server(_uvicorn_config(create_app(classifier, limits), host, port, limits, log_level="info"))
    server.run(sockets=[sock])


class BackgroundServer:
    """A server running in a daemon thread; ``stop()`` ends it. Also a context manager.

    Example::

        with serve_in_background(predictor, port=0) as server:
            httpx.post(server.url + "predict", json={"premise": "비가 온다", "hypothesis": "날씨가 맑다"})
    """

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.url = f"http://{_url_host(host)}:{port}/"

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the requests in flight, then stop (waits at most ``timeout_s`` seconds)."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"BackgroundServer({self.url!r}, running={self.is_running})"


def serve_in_background(model_dir: str | Path | Classifier, host: str = "127.0.0.1", port: int = 8000,
                        limits: ServeLimits | None = None, device: str | None = None, precision: str = "32",
                        backend: str = "auto", log_level: str = "warning", startup_timeout_s: float = 60.0,
                        calibrated: bool = True) -> BackgroundServer:
    """Start a server in a thread and return once it answers; for notebooks, where ``run_server`` would block.

    ``port=0`` picks a free port (read it from ``.port`` or ``.url``). Pass a model folder rather than a
    loaded ``Predictor`` where you can: a folder is loaded on the thread that calls the model (faster on a CPU).

    Example::

        server = serve_in_background("runs/sample/model", port=0)
        server.url  # 'http://127.0.0.1:41237/'
        server.stop()
    """
    classifier = _load(model_dir, device, precision, calibrated, backend)
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    limits = limits or ServeLimits()
    server = _Server(_uvicorn_config(create_app(classifier, limits), host, port, limits, log_level=log_level))
    # uvicorn installs no signal handlers outside the main thread, so Ctrl+C stays the notebook's.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"korpair-serve-{port}",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:  # set once the lifespan has run and the socket accepts
        if not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} stopped during startup; see the log above")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start within {startup_timeout_s} s")
        time.sleep(0.01)
    handle = BackgroundServer(server, thread, host, port)
    _announce(model_dir, host, port, blocking=False)
    return handle


def _load(model_dir: str | Path | Classifier, device: str | None, precision: str = "32",
          calibrated: bool = True, backend: str = "auto") -> Classifier:
    if isinstance(model_dir, Classifier):
        return model_dir
    # Imported here so that `import korpair.serve` (and `korpair --help`) does not load torch.
    from korpair.inference import Predictor

    return load_on_model_thread(lambda: Predictor.from_pretrained(model_dir, device=device, precision=precision,
                                                                  backend=backend, calibrated=calibrated))


def _listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn: port 0 then gives a free port we can report, with no race."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             proto=socket.IPPROTO_TCP)[0]
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
        # without it Nagle's algorithm adds ~40 ms to every response on keep-alive connections.
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}. "
                          "Is another server using that port? Pick another with port= (0 picks a free one).") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, with out-of-file-descriptor errors reported once a minute instead of at every accept."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(QuietAcceptErrors())
        await super().serve(sockets)


def _uvicorn_config(app, host: str, port: int, limits: ServeLimits, log_level: str) -> uvicorn.Config:
    # Our h11 protocol adds the header timeout and the connection limit that uvicorn lacks (see connections.py);
    # uvicorn's own limit_concurrency is left off: it counts idle connections, then answers 503 to everyone.
    protocol = guarded_protocol(limits.header_timeout_s, fit_connection_limit(limits.max_connections))
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", http=protocol,
                          timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type] (a float works)
                          access_log=log_level in ("info", "debug"), timeout_graceful_shutdown=10)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"  # listening everywhere: this machine opens it on loopback
    return f"[{host}]" if ":" in host else host


def _announce(model_dir: object, host: str, port: int, *, blocking: bool) -> None:
    url = f"http://{_url_host(host)}:{port}/"
    if not _is_loopback(host):
        log.warning("listening on %s:%d: any machine that can reach this one may use the model, with no "
                    "authentication. Use host='127.0.0.1' unless you mean it.", host, port)
    name = model_dir if isinstance(model_dir, (str, Path)) else type(model_dir).__name__
    lines = [f"korpair: serving {name} on {url}  (API docs: {url}docs)"]
    if "google.colab" in sys.modules:
        lines += [
            "In Colab, open the page in a new tab with:",
            "    from google.colab.output import serve_kernel_port_as_window",
            f"    serve_kernel_port_as_window({port})",
            "or print its public URL with:",
            "    from google.colab.output import eval_js",
            f"    print(eval_js(\"google.colab.kernel.proxyPort({port})\"))",
        ]
        if blocking:
            lines.append("This cell now blocks; to keep using the notebook, start it with "
                         "korpair.serve.serve_in_background(...) instead.")
    print("\n".join(lines), flush=True)
