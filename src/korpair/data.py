"""From pairs to padded batches: encode, cache on disk, group by length, collate.

Encoded features are stored as flat memory-mapped NumPy arrays (token ids plus
offsets), so a corpus larger than memory costs little RSS, and a second run
with the same data, tokenizer and max length reads them back instead of
tokenizing again. ``encode_pairs_cached`` streams: it takes any iterable of
pairs (a list, or a generator over a file larger than memory), tokenizes it
chunk by chunk and appends each chunk to the ``.npy`` files on disk, so its
peak memory is one chunk, not the corpus.

>>> feats = encode_pairs_cached(tokenizer, pairs, label_map, max_length=64)
>>> batch = PairCollator(pad_id=0)([feats[i] for i in range(4)])
>>> batch["input_ids"].shape       # padded to the longest of the 4, not to 64
torch.Size([4, 24])
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from filelock import FileLock, Timeout
from torch.utils.data import DataLoader, Dataset, Sampler

from korpair.config import DataConfig
from korpair.corpora import LabelMap, Pair
from korpair.errors import KorpairError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the on-disk layout changes
ENCODE_CHUNK = 4096  # pairs per tokenizer call: big enough for the Rust threads, small enough for RAM


def default_cache_dir() -> Path:
    root = os.environ.get("KORPAIR_HOME") or Path.home() / ".cache" / "korpair"
    return Path(root) / "features"


class EncodedPairs(Dataset):
    """Token ids of many pairs, flat, with offsets; item ``i`` is one pair's arrays.

    Loaded from disk (``EncodedPairs.load``), ``input_ids``, ``token_type_ids``
    and ``labels`` are read-only memory maps: pages are read when a batch needs
    them and the kernel may drop them again, so they cost no anonymous memory.
    Only ``offsets`` is held in RAM (8 bytes per pair), because every sampler
    needs all the lengths. Pickling (DataLoader workers under ``spawn``,
    ``ddp_spawn``) sends the folder, not the arrays; the receiver maps it again.

    >>> feats = EncodedPairs.load(folder)
    >>> feats[0]["input_ids"], feats.lengths[:3]
    (memmap([2, 417, ..., 3], dtype=int32), array([21, 17, 30]))
    """

    def __init__(self, input_ids: np.ndarray, token_type_ids: np.ndarray | None,
                 offsets: np.ndarray, labels: np.ndarray | None, folder: Path | None = None) -> None:
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids
        self.offsets = offsets
        self.labels = labels
        self.folder = folder  # set when the arrays are memory maps of this folder

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> dict[str, np.ndarray | int]:
        start, end = self.offsets[i], self.offsets[i + 1]
        item: dict[str, np.ndarray | int] = {"input_ids": self.input_ids[start:end]}
        if self.token_type_ids is not None:
            item["token_type_ids"] = self.token_type_ids[start:end]
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item

    def __getstate__(self) -> dict:
        # np.memmap pickles as a full in-memory copy: send the folder instead.
        if self.folder is not None:
            return {"folder": self.folder}
        return self.__dict__.copy()

    def __setstate__(self, state: dict) -> None:
        if set(state) == {"folder"}:
            state = EncodedPairs.load(state["folder"]).__dict__
        self.__dict__.update(state)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "input_ids.npy", self.input_ids)
        np.save(folder / "offsets.npy", self.offsets)
        if self.token_type_ids is not None:
            np.save(folder / "token_type_ids.npy", self.token_type_ids)
        if self.labels is not None:
            np.save(folder / "labels.npy", self.labels)

    @classmethod
    def load(cls, folder: Path) -> EncodedPairs:
        folder = Path(folder)

        def opt(name: str) -> np.ndarray | None:
            path = folder / f"{name}.npy"
            return np.load(path, mmap_mode="r") if path.exists() else None

        return cls(np.load(folder / "input_ids.npy", mmap_mode="r"), opt("token_type_ids"),
                   np.load(folder / "offsets.npy"), opt("labels"), folder)


def encode_pairs(tokenizer, pairs: Sequence[Pair], label_map: LabelMap | None,
                 max_length: int) -> EncodedPairs:
    """Tokenize pairs in memory as ``[CLS] a [SEP] b [SEP]``, truncating the longer text first.

    Holds all the features in RAM; for a corpus of any size use ``encode_pairs_cached``.
    The ids are exactly those of ``tokenizer(premises, hypotheses, truncation=True,
    max_length=max_length)``, only faster (see ``_token_ids_fast``).

    >>> encode_pairs(tokenizer, [Pair("비가 온다", "날씨가 맑다", "contradiction")], labels, 64)[0]
    {'input_ids': array([2, 1021, 388, 3, 730, 1544, 3], dtype=int32), 'token_type_ids': ..., 'labels': 2}
    """
    use_tti = "token_type_ids" in tokenizer.model_input_names
    ids_chunks, tti_chunks, len_chunks = [], [], []
    for start in range(0, len(pairs), ENCODE_CHUNK):
        chunk = pairs[start : start + ENCODE_CHUNK]
        premises, hypotheses = [p.premise for p in chunk], [p.hypothesis for p in chunk]
        encoded = _token_ids_fast(tokenizer, premises, hypotheses, max_length)
        if encoded is None:
            encoded = _token_ids_call(tokenizer, premises, hypotheses, max_length)
        ids, tti, lengths = encoded
        ids_chunks.append(ids)
        tti_chunks.append(tti)
        len_chunks.append(lengths)
    offsets = np.zeros(len(pairs) + 1, dtype=np.int64)
    if len_chunks:
        np.cumsum(np.concatenate(len_chunks), out=offsets[1:])
    labels = None
    if label_map is not None and pairs and all(p.label is not None for p in pairs):
        labels = np.fromiter((label_map.id(p.label) for p in pairs), dtype=np.int64, count=len(pairs))
    cat = lambda chunks, dt: np.concatenate(chunks) if chunks else np.zeros(0, dtype=dt)  # noqa: E731
    return EncodedPairs(cat(ids_chunks, np.int32), cat(tti_chunks, np.int8) if use_tti else None,
                        offsets, labels)


TokenIds = tuple[np.ndarray, np.ndarray, np.ndarray]  # flat ids (int32), flat type ids (int8), lengths


def _token_ids_call(tokenizer, premises: list[str], hypotheses: list[str], max_length: int) -> TokenIds:
    """The reference path: one batched ``tokenizer(...)`` call (also the only one for a Python tokenizer)."""
    enc = tokenizer(premises, hypotheses, truncation="longest_first", max_length=max_length,
                    return_attention_mask=False, return_token_type_ids=True)
    lengths = np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(premises))
    total = int(lengths.sum())
    return (np.fromiter(itertools.chain.from_iterable(enc["input_ids"]), np.int32, total),
            np.fromiter(itertools.chain.from_iterable(enc["token_type_ids"]), np.int8, total), lengths)


def _token_ids_fast(tokenizer, premises: list[str], hypotheses: list[str], max_length: int) -> TokenIds | None:
    """The ids of ``_token_ids_call``, with each distinct sentence tokenized once.

    NLI corpora pair every premise with several hypotheses (KLUE-NLI: three), so
    a third of the texts are repeats. A pair's ids are ``template(a, b)``: the
    Rust tokenizer encodes a pair as its two texts separately, then truncates and
    adds the special tokens in its post-processor. So the distinct texts are
    encoded once, without special tokens, by ``encode_batch_fast`` (no offsets,
    no Python objects per token), and the pairs are assembled with NumPy from the
    post-processor's layout, read off one real pair. Pairs too long for
    ``max_length`` go through the Rust post-processor itself, so truncation is
    the tokenizer's own. About 2x faster than the ``tokenizer(...)`` call.

    Returns None where this does not apply (a Python tokenizer, or a template
    that is not ``specials, a, specials, b, specials``).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not premises or not hasattr(backend, "post_process"):
        return None
    texts = list(dict.fromkeys(itertools.chain(premises, hypotheses)))
    index = {t: i for i, t in enumerate(texts)}
    a_idx = np.fromiter(map(index.__getitem__, premises), np.int64, len(premises))
    b_idx = np.fromiter(map(index.__getitem__, hypotheses), np.int64, len(hypotheses))
    # The same state transformers sets on the backend for a call, restored after, as transformers does.
    truncation, padding = backend.truncation, backend.padding
    backend.no_padding()
    backend.no_truncation()
    try:
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        encodings = encode(texts, add_special_tokens=False)
        token_lists = [e.ids for e in encodings]
        text_len = np.fromiter(map(len, token_lists), np.int64, len(texts))
        layout = _pair_layout(backend, encodings, a_idx, b_idx, text_len)
        if layout is None:
            return None
        special_ids, special_types, order, a_type, b_type = layout
        n_special = len(special_ids)
        n1, n2 = text_len[a_idx], text_len[b_idx]
        too_long = np.flatnonzero(n1 + n2 + n_special > max_length)
        long_ids: list[int] = []
        long_types: list[int] = []
        long_len = np.zeros(len(too_long), dtype=np.int64)
        if len(too_long):
            backend.enable_truncation(max_length, strategy="longest_first", direction=tokenizer.truncation_side)
            for k, i in enumerate(too_long):
                out = backend.post_process(encodings[a_idx[i]], encodings[b_idx[i]], add_special_tokens=True)
                long_ids += out.ids
                long_types += out.type_ids
                long_len[k] = len(out.ids)
    finally:
        backend.no_truncation() if truncation is None else backend.enable_truncation(**truncation)
        if padding is not None:
            backend.enable_padding(**padding)

    # One source array: the special tokens, the texts' ids twice (as a, as b: their type ids
    # differ), and the truncated pairs; every output token is a gather from it.
    flat = np.fromiter(itertools.chain.from_iterable(token_lists), np.int32, int(text_len.sum()))
    text_start = np.cumsum(text_len) - text_len
    src_ids = np.concatenate([np.asarray(special_ids, np.int32), flat, flat, np.asarray(long_ids, np.int32)])
    src_types = np.concatenate([np.asarray(special_types, np.int8), np.full(len(flat), a_type, np.int8),
                                np.full(len(flat), b_type, np.int8), np.asarray(long_types, np.int8)])
    # Each pair is a row of segments in template order: one per special token, one for a, one for b.
    n_pairs = len(premises)
    seg_start = np.empty((n_pairs, len(order)), dtype=np.int64)
    seg_len = np.empty((n_pairs, len(order)), dtype=np.int64)
    for col, part in enumerate(order):
        if part == "a":
            seg_start[:, col], seg_len[:, col] = n_special + text_start[a_idx], n1
        elif part == "b":
            seg_start[:, col], seg_len[:, col] = n_special + len(flat) + text_start[b_idx], n2
        else:
            seg_start[:, col], seg_len[:, col] = part, 1
    if len(too_long):  # one segment: the post-processor's output
        seg_len[too_long] = 0
        seg_len[too_long, 0] = long_len
        seg_start[too_long, 0] = n_special + 2 * len(flat) + np.cumsum(long_len) - long_len
    seg_len, seg_start = seg_len.ravel(), seg_start.ravel()
    total = int(seg_len.sum())
    gather = np.arange(total) + np.repeat(seg_start - (np.cumsum(seg_len) - seg_len), seg_len)
    return src_ids[gather], src_types[gather], seg_len.reshape(n_pairs, -1).sum(axis=1)


def _pair_layout(backend, encodings, a_idx: np.ndarray, b_idx: np.ndarray, text_len: np.ndarray):
    """The post-processor's pair layout, read off one pair that it leaves untruncated.

    Returns ``(special_ids, special_types, order, a_type, b_type)``, where
    ``order`` lists the template's parts: ``"a"``, ``"b"`` or the position of a
    special token in ``special_ids``; None when the layout is not
    ``specials, a, specials, b, specials`` with one type id per text.
    """
    # a probe with two non-empty texts of different ids, so that a swapped template cannot pass the check
    probe = next((i for i in np.flatnonzero((text_len[a_idx] > 0) & (text_len[b_idx] > 0))
                  if encodings[a_idx[i]].ids != encodings[b_idx[i]].ids), None)
    if probe is None:
        return None
    a, b = encodings[a_idx[probe]], encodings[b_idx[probe]]
    out = backend.post_process(a, b, add_special_tokens=True)  # truncation is off here
    special_ids, special_types, order = [], [], []
    parts: list[set[int]] = []  # the type ids of each run of text tokens
    for token, typ, special in zip(out.ids, out.type_ids, out.special_tokens_mask):
        if special:
            order.append(len(special_ids))
            special_ids.append(token)
            special_types.append(typ)
        elif order and order[-1] in ("a", "b"):  # the text goes on
            parts[-1].add(typ)
        elif len(parts) < 2:
            parts.append({typ})
            order.append("ab"[len(parts) - 1])
        else:
            return None
    if len(parts) != 2 or any(len(p) != 1 for p in parts):
        return None
    a_type, b_type = (next(iter(p)) for p in parts)
    # the layout must rebuild this pair exactly, or it is not what we think it is
    rebuilt = [t for part in order for t in (a.ids if part == "a" else b.ids if part == "b" else [special_ids[part]])]
    if rebuilt != out.ids:
        return None
    return special_ids, special_types, order, a_type, b_type


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything in the tokenizer that changes token ids.

    >>> tokenizer_fingerprint(AutoTokenizer.from_pretrained("beomi/kcbert-base"))[:12]
    '5c1b0e3f9a77'
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


class _PairsDigest:
    """sha256 of the label names and every pair's texts and label, fed chunk by chunk."""

    def __init__(self, label_map: LabelMap | None) -> None:
        self._h = hashlib.sha256(json.dumps(label_map.names if label_map else None).encode())

    def update(self, pairs: Iterable[Pair]) -> None:
        # \x1f/\x1e separators cannot occur inside normal text, so boundaries are unambiguous
        self._h.update("".join(f"{p.premise}\x1f{p.hypothesis}\x1f{p.label}\x1e" for p in pairs).encode())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def pairs_fingerprint(pairs: Sequence[Pair], label_map: LabelMap | None) -> str:
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


def _write_features(tokenizer, pairs: Iterable[Pair], label_map: LabelMap | None, max_length: int,
                    folder: Path, chunk_size: int = ENCODE_CHUNK) -> str:
    """Encode ``pairs`` chunk by chunk into the ``.npy`` files of ``folder``; return their digest.

    Memory: one chunk of pairs and its token lists, whatever the corpus size.
    The digest is ``pairs_fingerprint`` of everything streamed.
    """
    use_tti = "token_type_ids" in tokenizer.model_input_names
    ids = _NpyAppender(folder / "input_ids.npy", np.int32)
    tti = _NpyAppender(folder / "token_type_ids.npy", np.int8) if use_tti else None
    offsets = _NpyAppender(folder / "offsets.npy", np.int64)
    labels = _NpyAppender(folder / "labels.npy", np.int64) if label_map is not None else None
    files = [f for f in (ids, tti, offsets, labels) if f is not None]
    digest = _PairsDigest(label_map)
    end, n_pairs, all_labeled = 0, 0, True
    try:
        offsets.append(np.zeros(1, dtype=np.int64))
        stream = iter(pairs)
        while chunk := list(itertools.islice(stream, chunk_size)):
            digest.update(chunk)
            # module-level lookup, so tests can count tokenizer passes
            feats = encode_pairs(tokenizer, chunk, label_map, max_length)
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


def encode_pairs_cached(tokenizer, pairs: Iterable[Pair], label_map: LabelMap | None,
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

    >>> stream = iter_pairs("train.jsonl", strict=False)
    >>> feats = encode_pairs_cached(tokenizer, stream, labels, 64, source_key=sha256_file("train.jsonl"))
    >>> len(feats), type(feats.input_ids).__name__
    (1000000, 'memmap')
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    key: str | None = None
    if source_key is not None:
        key = _cache_key(tokenizer, max_length, {"source": source_key,
                                                 "labels": label_map.names if label_map else None})
    elif isinstance(pairs, Sequence):
        key = _cache_key(tokenizer, max_length, {"pairs": pairs_fingerprint(pairs, label_map)})
    if key is not None and (root / key / "offsets.npy").exists():
        log.info("features cache hit: %s", root / key)
        return EncodedPairs.load(root / key)
    lock = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_orphaned_temp_folders(root)
        lock = _lock_key(root, key)
        if key is not None and (root / key / "offsets.npy").exists():
            _unlock(lock)
            log.info("features cache hit, written by another process meanwhile: %s", root / key)
            return EncodedPairs.load(root / key)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".encoding.{os.getpid()}@{socket.gethostname()}."))
    except OSError as err:  # a read-only cache must not stop training
        _unlock(lock)
        log.warning("could not write the features cache in %s (%s): encoding in memory instead; "
                    "set data.cache_dir to a writable folder for a corpus larger than memory", root, err)
        return _encode_in_memory(tokenizer, pairs, label_map, max_length)
    try:
        digest = _write_features(tokenizer, pairs, label_map, max_length, tmp)
        folder = root / (key or _cache_key(tokenizer, max_length, {"pairs": digest}))
        try:
            os.rename(tmp, folder)  # atomic
            log.info("features cached: %s", folder)
        except OSError:
            if not (folder / "offsets.npy").exists():
                raise
            # an iterator's content was already cached
            log.info("features cache hit after encoding: %s", folder)
    except OSError as err:  # disk full, quota ...
        if not isinstance(pairs, Sequence):  # a stream cannot be read twice
            raise KorpairError(f"could not write encoded features to {root}: {err}; free some space "
                               "or point data.cache_dir at another disk") from err
        log.warning("could not write the features cache in %s (%s): encoding in memory instead", root, err)
        return _encode_in_memory(tokenizer, pairs, label_map, max_length)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; cleans up after an error
        _unlock(lock)
    return EncodedPairs.load(folder)


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
        if rest.rsplit(".", 1)[0] != host or not pid.isdigit() or _process_alive(int(pid)):
            continue
        log.info("removing %s, left by a killed encoder (process %s)", folder, pid)
        shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _encode_in_memory(tokenizer, pairs: Iterable[Pair], label_map: LabelMap | None,
                      max_length: int) -> EncodedPairs:
    return encode_pairs(tokenizer, pairs if isinstance(pairs, Sequence) else list(pairs), label_map, max_length)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Random batches of similar-length pairs, sharded across DDP ranks.

    Shuffle all indices, cut them into windows of ``window`` batches, sort each
    window by length and cut it into batches, then shuffle the batches: little
    padding, yet batch order stays random. With ``shuffle=False`` batches come
    in a fixed, length-sorted order (evaluation). Every rank gets the same
    number of training batches (a DDP step needs all ranks); for evaluation
    (``even=False``) each pair is seen exactly once across ranks. Memory: the
    lengths and one permutation as NumPy arrays (8 bytes a pair each) and one
    small array per batch; nothing per pair is a Python object.

    >>> sampler = LengthGroupedBatchSampler(feats.lengths, batch_size=32, seed=7)
    >>> next(iter(sampler))[:3]
    [81234, 5120, 733410]
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, *, shuffle: bool = True,
                 group_by_length: bool = True, seed: int = 0, window: int = 50,
                 num_replicas: int = 1, rank: int = 0, even: bool = True) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.seed = seed
        self.window = window
        self.num_replicas = num_replicas
        self.rank = rank
        self.even = even
        self.epoch = 0
        self.skip = 0  # batches already consumed this epoch (resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable") if self.group_by_length else np.arange(n)
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        batches: list[np.ndarray] = []
        span = self.window * self.batch_size if self.group_by_length else n
        for start in range(0, n, span):
            chunk = order[start : start + span]
            if self.group_by_length:
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _my_batches(self) -> list[np.ndarray]:
        batches = self._all_batches()
        if self.num_replicas > 1:
            if self.even:
                batches = batches[: len(batches) - len(batches) % self.num_replicas]
            batches = batches[self.rank :: self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._my_batches()
        skip, self.skip = self.skip, 0
        for batch in batches[skip:]:
            yield batch.tolist()

    def __len__(self) -> int:
        n_batches = math.ceil(len(self.lengths) / self.batch_size)
        if self.num_replicas > 1:
            if self.even:
                return n_batches // self.num_replicas
            return len(range(self.rank, n_batches, self.num_replicas))
        return n_batches


class PairCollator:
    """Pad a list of encoded pairs to the longest one (rounded up to ``pad_to_multiple_of``).

    >>> batch = PairCollator(pad_id=0, pad_to_multiple_of=8)([feats[0], feats[1]])
    >>> sorted(batch), batch["input_ids"].shape
    (['attention_mask', 'input_ids', 'labels', 'token_type_ids'], torch.Size([2, 24]))
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id = pad_id
        self.multiple = pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        if self.multiple:
            longest = -(-longest // self.multiple) * self.multiple
        n = len(items)
        ids = np.full((n, longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, longest), dtype=np.int64)
        tti = np.zeros((n, longest), dtype=np.int64) if "token_type_ids" in items[0] else None
        for row, it in enumerate(items):
            k = len(it["input_ids"])
            ids[row, :k] = it["input_ids"]
            mask[row, :k] = 1
            if tti is not None:
                tti[row, :k] = it["token_type_ids"]
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if tti is not None:
            batch["token_type_ids"] = torch.from_numpy(tti)
        if "labels" in items[0]:
            batch["labels"] = torch.tensor([it["labels"] for it in items], dtype=torch.long)
        return batch


class PairDataModule(L.LightningDataModule):
    """Train and validation loaders over already-encoded features.

    Batches come from ``LengthGroupedBatchSampler`` over the features' lengths,
    sharded across DDP ranks by the sampler itself (build the Trainer with
    ``use_distributed_sampler=False``).

    >>> data = PairDataModule(train_feats, val_feats, DataConfig(batch_size=32), pad_id=0, seed=7)
    >>> trainer.fit(task, datamodule=data)
    """

    def __init__(self, train: EncodedPairs, validation: EncodedPairs, cfg: DataConfig,
                 pad_id: int, seed: int = 0) -> None:
        super().__init__()
        self.train, self.validation, self.cfg = train, validation, cfg
        self.pad_id, self.seed = pad_id, seed

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _pad_multiple(self) -> int | None:
        multiple = self.cfg.pad_to_multiple_of
        if multiple != "auto":
            return multiple
        # tensor cores want multiples of 8; a CPU's kernels gain nothing from them but padding
        trainer = getattr(self, "trainer", None)
        return 8 if trainer is not None and trainer.strategy.root_device.type == "cuda" else None

    def _loader(self, feats: EncodedPairs, batch_size: int, train: bool) -> DataLoader:
        world, rank = self._world()
        sampler = LengthGroupedBatchSampler(
            feats.lengths, batch_size, shuffle=train, group_by_length=self.cfg.group_by_length,
            seed=self.seed, num_replicas=world, rank=rank, even=train,
        )
        return DataLoader(
            feats, batch_sampler=sampler,
            collate_fn=PairCollator(self.pad_id, self._pad_multiple()),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.cfg.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation, self.cfg.eval_batch_size, train=False)
