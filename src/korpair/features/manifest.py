"""The manifest of a features cache entry: what its files must be, checked each time it is opened.

``manifest.json`` records every array file's size in bytes, and a sha256 of the
small ones (``offsets.npy`` and ``labels.npy``, 8 bytes a pair). Opening an
entry checks the sizes, those hashes, the ``.npy`` headers and that the arrays
agree with each other. That costs a read of 16 bytes a pair and no read of the
token files (``input_ids.npy``, ``token_type_ids.npy``), which are only memory
mapped and may be larger than memory; so a truncated or missing file, garbage
in the offsets or labels, or a missing or garbage manifest are found, and
garbage of the same size inside the token files is not.

Example::

    write_manifest(folder)                  # once its .npy files are complete
    feats, problem = open_entry(folder)     # (EncodedPairs, None), or (None, "offsets.npy does not match ...")
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from korpair.features.encode import EncodedPairs

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# The dtypes each array file of an entry may hold (labels: class ids, or a regression corpus's scores).
ARRAY_FILES = {"input_ids.npy": (np.int32,), "token_type_ids.npy": (np.int8,), "offsets.npy": (np.int64,),
               "labels.npy": (np.int64, np.float32)}
HASHED_FILES = ("offsets.npy", "labels.npy")


def write_manifest(folder: Path) -> None:
    """Record the size of each array file in ``folder``, and a sha256 of the small ones."""
    files = {}
    for name in ARRAY_FILES:
        path = folder / name
        if path.is_file():
            files[name] = {"bytes": path.stat().st_size}
            if name in HASHED_FILES:
                files[name]["sha256"] = file_sha256(path)
    manifest = {"format": MANIFEST_FORMAT, "files": files}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def open_entry(folder: Path) -> tuple[EncodedPairs | None, str | None]:
    """``(features, None)`` for a sound entry, ``(None, what is wrong)`` for a damaged one, and
    ``(None, None)`` where there is none."""
    try:
        text = (folder / MANIFEST_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        if not folder.exists():
            return None, None
        return None, f"no {MANIFEST_NAME} (written by korpair 0.1, or damaged)"
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{MANIFEST_NAME} cannot be read ({err})"
    expected = _expected_files(text)
    if expected is None:
        return None, f"{MANIFEST_NAME} is not a manifest this korpair version wrote"
    for name in ARRAY_FILES:
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if name in expected:
                return None, f"{name} is missing"
            continue
        if name not in expected:
            return None, f"{name} is not in {MANIFEST_NAME}"
        want_size, want_sha256 = expected[name]
        if size != want_size:
            return None, f"{name} holds {size} bytes, {MANIFEST_NAME} says {want_size}"
        if name in HASHED_FILES and file_sha256(path) != want_sha256:
            return None, f"{name} does not match its sha256 in {MANIFEST_NAME}"
    try:
        feats = EncodedPairs.load(folder)
    except (OSError, ValueError) as err:
        return None, f"its arrays cannot be read ({err})"
    problem = _inconsistency(feats)
    return (None, problem) if problem else (feats, None)


def _expected_files(text: str) -> dict[str, tuple[int, str | None]] | None:
    """``{file name: (bytes, sha256 or None)}`` from a manifest's text; ``None`` for anything else."""
    try:
        manifest = json.loads(text)
        files = manifest["files"]
        if manifest["format"] != MANIFEST_FORMAT or not set(files) <= set(ARRAY_FILES):
            return None
        return {name: (int(spec["bytes"]), str(spec["sha256"]) if name in HASHED_FILES else None)
                for name, spec in files.items()}
    except (ValueError, TypeError, KeyError):
        return None


def _inconsistency(feats: EncodedPairs) -> str | None:
    """What makes the loaded arrays disagree with each other; ``None`` when they agree."""
    arrays = {"input_ids.npy": feats.input_ids, "token_type_ids.npy": feats.token_type_ids,
              "offsets.npy": feats.offsets, "labels.npy": feats.labels}
    for name, array in arrays.items():
        if array is not None and (array.ndim != 1 or array.dtype not in ARRAY_FILES[name]):
            kinds = " or ".join(str(np.dtype(t)) for t in ARRAY_FILES[name])
            return f"{name} holds {array.dtype} of shape {array.shape}, not 1-D {kinds}"
    offsets = feats.offsets
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(feats.input_ids) or np.any(np.diff(offsets) < 0):
        return "offsets.npy does not run from 0 up to the number of tokens"
    if feats.token_type_ids is not None and len(feats.token_type_ids) != len(feats.input_ids):
        return "token_type_ids.npy and input_ids.npy differ in length"
    if feats.labels is not None and len(feats.labels) != len(feats):
        return "labels.npy does not hold one label a pair"
    return None


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
