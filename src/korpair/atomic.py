"""Write outputs so that a crash never leaves a half-written file or folder.

Everything is written under a temporary name in the same folder, flushed to
disk, then renamed over the target: readers see the old version or the new
one, never a mix.

Example::

    write_text(Path("runs/x/metrics.json"), json.dumps({"accuracy": 0.9}))
    with open_atomic(Path("preds.jsonl")) as fh:
        fh.write("...")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def open_atomic(path: Path, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding,
                       newline=None if binary else newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with open_atomic(path) as fh:
        fh.write(text)


def write_dir(path: Path, fill: Callable[[Path], None]) -> None:
    """Build a folder with ``fill(tmp_dir)``, then swap it in for ``path``.

    If ``fill`` raises, the previous ``path`` is left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = None
    try:
        fill(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_figure(path: Path, fig) -> None:
    """Save a matplotlib figure as PNG atomically."""
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
