"""Serve a classifier or a similarity (regression) model over HTTP: a JSON API with micro-batching,
offline API docs and a Korean demo page (probability bars, or a 유사도 gauge for a score).

Example::

    from korpair.serve import run_server, serve_in_background, ServeLimits
    run_server("runs/sample/model", port=8000)                  # blocks; open http://127.0.0.1:8000/
    server = serve_in_background("runs/sample/model", port=0)   # notebooks: returns at once
    server.url, server.stop()

For tests or a custom server, build the app yourself: ``create_app(classifier, limits)``.
Importing this package loads neither torch nor a model.
"""

from korpair.serve.app import create_app
from korpair.serve.batcher import Classifier
from korpair.serve.limits import ServeLimits
from korpair.serve.server import BackgroundServer, run_server, serve_in_background

__all__ = ["create_app", "run_server", "serve_in_background", "BackgroundServer", "ServeLimits", "Classifier"]
