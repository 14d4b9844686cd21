"""Exceptions raised by korpair.

Every error a user can cause is a ``KorpairError``; its message says what is
wrong, where (file and line, or config key, or request field) and what is
allowed. Only the CLI turns them into an exit code. ``disk_full_as_error``
and ``loading_error`` word two failures of the libraries under korpair (a
full disk, a model folder transformers cannot load) in the same way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

# ENOSPC: the disk is full; EDQUOT: the user's quota is (absent on Windows).
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_REDO = "copy the folder again from where it came from, or export the model again"


class KorpairError(Exception):
    """Base class: a problem the user can fix."""


class ConfigError(KorpairError):
    """A config file or option is invalid."""


class CorpusError(KorpairError):
    """A data file is missing, malformed or holds invalid rows."""


class DownloadError(KorpairError):
    """A corpus could not be downloaded or failed its checksum."""


class ModelFolderError(KorpairError):
    """A model folder is missing files or cannot be loaded."""


class OutputExistsError(KorpairError):
    """The output folder already holds a run."""


class TrainingInterrupted(KorpairError):
    """Training stopped on a signal after saving a resumable checkpoint."""

    def __init__(self, output_dir, step: int, resumable: bool = True) -> None:
        self.output_dir, self.step = output_dir, step
        if resumable:
            message = (f"training interrupted at step {step}; a resumable checkpoint is in "
                       f"{output_dir}/checkpoints/; continue it with resume='{output_dir}'")
        else:
            message = "training stopped by a signal before its first step; nothing to resume: start it again"
        super().__init__(message)


class DiskFullError(KorpairError):
    """An output could not be written: no space left on its device (or the quota is used up)."""


@contextlib.contextmanager
def disk_full_as_error(path: str | Path) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into a ``DiskFullError`` that names it.

    Meant around an atomic write (``korpair.atomic``), which leaves the
    previous version of ``path`` in place when it fails. Besides ``OSError``,
    safetensors reports its I/O errors as ``SafetensorError("... (os error 28)")``.

    >>> import errno
    >>> with disk_full_as_error("runs/x/model"):
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    korpair.errors.DiskFullError: runs/x/model: no space left on device (...): ...
    """
    try:
        yield
    except Exception as err:
        if not _is_disk_full(err):
            raise
        raise DiskFullError(f"{path}: no space left on device ({err}): free space or choose another output folder; "
                            "nothing was written there, and what it held before is as it was") from err


def _is_disk_full(err: BaseException) -> bool:
    seen = 0
    while err is not None and seen < 8:  # the cause chain of a wrapped I/O error
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        if any(f"(os error {code})" in str(err) for code in _NO_SPACE):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def loading_error(name_or_path: str | Path, what: str, err: BaseException) -> ModelFolderError:
    """A ``ModelFolderError`` for ``err``, raised while loading the ``what`` ("model", "tokenizer") of a folder.

    >>> str(loading_error("m", "model", pickle.UnpicklingError("GLOBAL os.system")))[:48]
    'm: refused: its weights are a pickle that holds '
    """
    path = Path(name_or_path)
    if isinstance(err, pickle.UnpicklingError):
        where = path / "pytorch_model.bin" if (path / "pytorch_model.bin").is_file() else path
        return ModelFolderError(
            f"{where}: refused: its weights are a pickle that holds objects other than tensors, which could run "
            "code when loaded. korpair loads such weights only as safetensors (model.safetensors): convert a "
            "checkpoint you trust with AutoModelForSequenceClassification.from_pretrained(...).save_pretrained("
            "folder, safe_serialization=True), or use a folder that has model.safetensors")
    if path.is_dir():  # name the file where a loader only says "Expecting value: line 1 column 1"
        for file in sorted(path.glob("*.json")):
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as bad:
                return ModelFolderError(f"{file}: not valid JSON ({bad}); {_REDO}")
    detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
    hint = ("; does config.json's id2label list the labels the model was trained with?"
            if "mismatch" in str(err).lower() else f"; {_REDO}" if path.is_dir() else "")
    return ModelFolderError(f"{path}: cannot load the {what} ({type(err).__name__}: {detail}){hint}")
