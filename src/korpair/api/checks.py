"""Checks that come before any work: input files that are there, outputs that can be written, options that fit.

``evaluate`` and ``predict_file`` run them before a model is loaded (several
seconds), so a typo in a path or an option costs nothing. Messages name the
Python arguments; the command line writes them as its flags.

>>> output_format("predictions.tsv")
'tsv'
>>> output_format("predictions.txt")
Traceback (most recent call last):
korpair.errors.ConfigError: predictions.txt: cannot tell the output format from the extension '.txt'; ...
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from korpair.corpora.readers import detect_format
from korpair.errors import ConfigError, CorpusError

# What predict_file writes, by the output file's extension; "-" is JSONL on stdout.
OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}
STDOUT = "-"


def output_format(path: str | Path) -> str:
    """The format ``predict_file`` writes to ``path``: from its extension, ``jsonl`` for ``-`` (stdout)."""
    if str(path) == STDOUT:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        shown = f"the extension {suffix!r}" if suffix else "a name without an extension"
        *others, last = OUTPUT_FORMATS
        raise ConfigError(f"{path}: cannot tell the output format from {shown}; name the file "
                          f"{', '.join(others)} or {last} (or {STDOUT} for JSONL on stdout)")
    return OUTPUT_FORMATS[suffix]


def readable_file(path: str | Path, fmt: str = "auto") -> str:
    """Check that ``path`` is a file korpair can read; returns its format (``fmt``, or from the extension)."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    if not path.is_file():
        raise CorpusError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise CorpusError(f"{path}: cannot read: permission denied")
    return detect_format(path, fmt)


def known_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"encoding={encoding!r}: not a text encoding Python knows "
                          "(e.g. 'utf-8', 'cp949', 'euc-kr')") from None


def at_least_one(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r}: expected a whole number of at least 1")


def writable_file(path: str | Path, source: str | Path | None = None) -> None:
    """Check that ``path`` can be written (its folder made where missing), and is not the input ``source``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; name the file to write")
    if source is not None and path.exists() and os.path.samefile(path, source):
        raise ConfigError(f"{path}: is the input file; write the predictions to another file")
    _can_create(path.parent, path)


def writable_dir(path: str | Path) -> None:
    """Check that a report folder can be written at ``path`` (made where missing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: is a file, not a folder; name a folder for the report")
    _can_create(path, path)


def _can_create(folder: Path, target: Path) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{target}: cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{target}: cannot be written: no permission to write in {existing}")
