"""The features cache: encoded pairs as memory-mapped ``.npy`` files, keyed by what changes them.

A second run with the same data, tokenizer and max length maps the cached
arrays instead of tokenizing again, and a corpus larger than memory costs
little RSS. ``encode_pairs_cached`` streams: it takes any iterable of pairs (a
list, or a generator over a file larger than memory), tokenizes it chunk by
chunk and appends each chunk to the files on disk, so its peak memory is one
chunk, not the corpus.

Example::

    feats = encode_pairs_cached(tokenizer, pairs, label_map, max_length=64)
    type(feats.input_ids).__name__         # 'memmap'
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from korpair.atomic import process_alive
from korpair.config import korpair_home
from korpair.errors import KorpairError
from korpair.features import encode as _encode
from korpair.features.encode import ENCODE_CHUNK, EncodedPairs
from korpair.features.manifest import open_entry, write_manifest
from korpair.types import LabelMap, Pair, Target

log = logging.getLogger(__name__)

# Part of the key: bump when the arrays change. The manifest did not change them: a 0.1 entry (no
# manifest) sits under the key that replaces it, so it is rebuilt in place rather than left behind.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    return korpair_home() / "features"


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything in the tokenizer that changes token ids.

    Example::

        tokenizer_fingerprint(AutoTokenizer.from_pretrained("beomi/kcbert-base"))[:12]  # '5c1b0e3f9a77'
    """
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # truncation/padding are call-time state that transformers sets on the backend
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(list(tokenizer.model_input_names)).encode())
    return h.hexdigest()


def _described(target: Target | None):
    # a LabelMap as cache format 1 keyed it (its names), a ScoreRange by its range
    if target is None:
        return None
    return list(target.names) if isinstance(target, LabelMap) else target.describe()


class _PairsDigest:
    """sha256 of the label names and every pair's texts and label, fed chunk by chunk."""

    def __init__(self, label_map: Target | None) -> None:
        self._h = hashlib.sha256(json.dumps(_described(label_map)).encode())

    def update(self, pairs: Iterable[Pair]) -> None:
        # \x1f/\x1e separators cannot occur inside normal text, so boundaries are unambiguous
        self._h.update("".join(f"{p.premise}\x1f{p.hypothesis}\x1f{p.label}\x1e" for p in pairs).encode())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def pairs_fingerprint(pairs: Sequence[Pair], label_map: Target | None) -> str:
    digest = _PairsDigest(label_map)
    for start in range(0, len(pairs), ENCODE_CHUNK):
        digest.update(pairs[start : start + ENCODE_CHUNK])
    return digest.hexdigest()


class _NpyAppender:
    """A 1-D ``.npy`` file written chunk by chunk with plain writes.

    The header goes first with shape (0,); numpy reserves room in it for the
    shape to grow (``GROWTH_AXIS_MAX_DIGITS``), so ``close`` rewrites it in
    place with the final length. Plain writes go through the page cache, which
    is not the process's memory; writing through a memory map would count
    every written page in the writer's RSS.
    """

    def __init__(self, path: Path, dtype) -> None:
        self.path, self.dtype, self.count = path, np.dtype(dtype), 0
        self._fh = open(path, "wb")
        self._header_size = self._fh.write(self._header(0))

    def _header(self, count: int) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                   "fortran_order": False, "shape": (count,)})
        return buf.getvalue()

    def append(self, values: np.ndarray) -> None:
        self._fh.write(memoryview(np.ascontiguousarray(values, dtype=self.dtype)).cast("B"))
        self.count += len(values)

    def close(self) -> None:
        header = self._header(self.count)
        if len(header) != self._header_size:  # pragma: no cover - numpy < 1.24 reserves no room
            raise RuntimeError(f"{self.path}: numpy wrote a longer .npy header; upgrade numpy to >= 1.26")
        self._fh.seek(0)
        self._fh.write(header)
        self._fh.close()

    def discard(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)


def _write_features(tokenizer, pairs: Iterable[Pair], label_map: Target | None, max_length: int,
                    folder: Path, chunk_size: int = ENCODE_CHUNK) -> str:
    """Encode ``pairs`` chunk by chunk into the ``.npy`` files of ``folder``; return their digest.

    Memory: one chunk of pairs and its token lists, whatever the corpus size.
    The digest is ``pairs_fingerprint`` of everything streamed.
    """
    use_tti = "token_type_ids" in tokenizer.model_input_names
    ids = _NpyAppender(folder / "input_ids.npy", np.int32)
    tti = _NpyAppender(folder / "token_type_ids.npy", np.int8) if use_tti else None
    offsets = _NpyAppender(folder / "offsets.npy", np.int64)
    labels = _NpyAppender(folder / "labels.npy", label_map.dtype) if label_map is not None else None
    files = [f for f in (ids, tti, offsets, labels) if f is not None]
    digest = _PairsDigest(label_map)
    end, n_pairs, all_labeled = 0, 0, True
    try:
        offsets.append(np.zeros(1, dtype=np.int64))
        stream = iter(pairs)
        while chunk := list(itertools.islice(stream, chunk_size)):
            digest.update(chunk)
            # module-level lookup, so tests can count tokenizer passes
            feats = _encode.encode_pairs(tokenizer, chunk, label_map, max_length)
            ids.append(feats.input_ids)
            if tti is not None:
                tti.append(feats.token_type_ids)
            offsets.append(feats.offsets[1:] + end)
            end += int(feats.offsets[-1])
            n_pairs += len(chunk)
            if labels is not None and all_labeled:
                all_labeled = feats.labels is not None
                if all_labeled:
                    labels.append(feats.labels)
    except BaseException:
        for f in files:
            f.discard()
        raise
    if labels is not None and not (all_labeled and n_pairs):
        labels.discard()  # like encode_pairs: labels only when every pair has one
        files.remove(labels)
    for f in files:
        f.close()
    return digest.hexdigest()


def _cache_key(tokenizer, max_length: int, content: dict) -> str:
    return hashlib.sha256(json.dumps({
        "format": CACHE_FORMAT,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length,
        **content,
    }).encode()).hexdigest()[:32]


def encode_pairs_cached(tokenizer, pairs: Iterable[Pair], label_map: Target | None,
                        max_length: int, cache_dir: Path | None = None, *,
                        source_key: str | None = None) -> EncodedPairs:
    """``encode_pairs`` streamed to memory-mapped files, cached by data content, tokenizer and max length.

    ``pairs`` may be a list or any iterable (a generator over a file larger
    than memory): it is tokenized ``ENCODE_CHUNK`` pairs at a time and each
    chunk is appended to the files, so peak memory is one chunk plus
    8 bytes per pair (the offsets), not the corpus. The files are written in a
    temporary folder that is renamed to the cache key at the end: a crash or a
    bad row mid-way leaves nothing behind.

    The key hashes the tokenizer, ``max_length`` and either every pair (a list
    is hashed before anything is tokenized, so a hit costs one pass over it; an
    iterator is hashed while it is encoded, so even a hit tokenizes it once) or
    ``source_key``, a digest that fixes the pairs without reading them (e.g. the
    files' sha256 and the reading options): then a hit never touches ``pairs``.

    A hit is checked against the entry's manifest (``korpair.features.manifest``)
    first; a damaged entry is encoded again, in place, with a warning naming it.

    Example::

        stream = iter_pairs("train.jsonl", strict=False)
        feats = encode_pairs_cached(tokenizer, stream, labels, 64, source_key=sha256_file("train.jsonl"))
        len(feats), type(feats.input_ids).__name__  # (1000000, 'memmap')
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    key: str | None = None
    if source_key is not None:
        key = _cache_key(tokenizer, max_length, {"source": source_key, "labels": _described(label_map)})
    elif isinstance(pairs, Sequence):
        key = _cache_key(tokenizer, max_length, {"pairs": pairs_fingerprint(pairs, label_map)})
    warned = False
    if key is not None:
        feats, problem = open_entry(root / key)
        if feats is not None:
            log.info("features cache hit: %s", root / key)
            return feats
        warned = _warn_damaged(root / key, problem)
    lock = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_orphaned_temp_folders(root)
        lock = _lock_key(root, key)
        if key is not None:
            feats, problem = open_entry(root / key)
            if feats is not None:
                _unlock(lock)
                log.info("features cache hit, written by another process meanwhile: %s", root / key)
                return feats
            if problem is not None:
                if not warned:
                    _warn_damaged(root / key, problem)
                _remove_entry(root / key)
        tmp = root / f".encoding.{os.getpid()}@{socket.gethostname()}.{secrets.token_hex(4)}"
        tmp.mkdir()  # 0o777 less the umask, like any folder: mkdtemp's 0700 would lock others out of a shared cache
    except OSError as err:  # a read-only cache must not stop training
        _unlock(lock)
        log.warning("could not write the features cache in %s (%s): encoding in memory instead; "
                    "set data.cache_dir to a writable folder for a corpus larger than memory", root, err)
        return _encode_in_memory(tokenizer, pairs, label_map, max_length)
    try:
        digest = _write_features(tokenizer, pairs, label_map, max_length, tmp)
        write_manifest(tmp)
        folder = root / (key or _cache_key(tokenizer, max_length, {"pairs": digest}))
        feats = _publish(tmp, folder, held=lock is not None)
    except OSError as err:  # disk full, quota ...
        if not isinstance(pairs, Sequence):  # a stream cannot be read twice
            raise KorpairError(f"could not write encoded features to {root}: {err}; free some space "
                               "or point data.cache_dir at another disk") from err
        log.warning("could not write the features cache in %s (%s): encoding in memory instead", root, err)
        return _encode_in_memory(tokenizer, pairs, label_map, max_length)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; cleans up after an error
        _unlock(lock)
    return feats


def _publish(tmp: Path, folder: Path, *, held: bool) -> EncodedPairs:
    """Rename the finished ``tmp`` to ``folder``, the entry's name; ``held``: its lock is held already.

    An iterator without ``source_key`` learns its key only now, so the entry
    may be there already: it is used if sound and replaced if damaged, under
    the key's lock, as a keyed encoding would.
    """
    try:
        os.rename(tmp, folder)  # atomic
    except OSError:
        if not folder.exists():
            raise
    else:
        log.info("features cached: %s", folder)
        return EncodedPairs.load(folder)
    lock = None if held else _lock_key(folder.parent, folder.name)
    try:
        feats, problem = open_entry(folder)
        if feats is not None:
            log.info("features cache hit after encoding: %s", folder)
            return feats
        _warn_damaged(folder, problem)
        _remove_entry(folder)
        os.rename(tmp, folder)
        log.info("features cached: %s", folder)
        return EncodedPairs.load(folder)
    finally:
        _unlock(lock)


def _warn_damaged(folder: Path, problem: str | None) -> bool:
    if problem is None:
        return False
    log.warning("features cache entry %s cannot be trusted: %s; encoding the data again", folder, problem)
    return True


def _remove_entry(folder: Path) -> None:
    """Delete a damaged entry: renamed first, so that a kill mid-way leaves a temporary folder
    (removed by ``_remove_orphaned_temp_folders``), never half an entry under the key."""
    if not folder.exists():
        return
    doomed = folder.with_name(f".encoding.{os.getpid()}@{socket.gethostname()}.{secrets.token_hex(4)}")
    os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _lock_key(root: Path, key: str | None) -> FileLock | None:
    """Hold ``root/KEY.lock`` while encoding: processes that encode the same data at once (the
    ranks of a torchrun or SLURM job start together) then encode it once, the others wait and read
    the cache. An iterator without ``source_key`` has no key before it is read: no lock."""
    if key is None:
        return None
    lock = FileLock(root / f"{key}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process is encoding the same data; waiting for it (%s)", lock.lock_file)
        lock.acquire()
    return lock


def _unlock(lock: FileLock | None) -> None:
    """Release the lock and delete its file, which would otherwise stay in the cache folder.

    Deleted while still held: a process already waiting on it then gets it,
    and finds the features cached (or, after a failure, encodes them itself).
    """
    if lock is not None:
        Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()


def _remove_orphaned_temp_folders(root: Path) -> None:
    """Remove the temporary folders of encoders on this host that were killed mid-way (SIGKILL, OOM).

    A temporary folder is named ``.encoding.PID@HOST.*``; on a cache shared by
    several machines only this host's processes can be checked.
    """
    host = socket.gethostname()
    for folder in root.glob(".encoding.*@*"):
        pid, _, rest = folder.name.removeprefix(".encoding.").partition("@")
        if rest.rsplit(".", 1)[0] != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        log.info("removing %s, left by a killed encoder (process %s)", folder, pid)
        shutil.rmtree(folder, ignore_errors=True)


def _encode_in_memory(tokenizer, pairs: Iterable[Pair], label_map: Target | None,
                      max_length: int) -> EncodedPairs:
    return _encode.encode_pairs(tokenizer, pairs if isinstance(pairs, Sequence) else list(pairs), label_map, max_length)
