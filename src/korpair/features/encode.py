"""Pairs -> token ids: ``[CLS] a [SEP] b [SEP]``, truncating the longer text first.

``EncodedPairs`` holds the ids of many pairs flat, with offsets; the cache
(``features.cache``) stores exactly these arrays on disk.

Example::

    feats = encode_pairs(tokenizer, [Pair("비가 온다", "날씨가 맑다", "contradiction")], labels, 64)
    feats[0]["input_ids"]          # array([2, 1021, 388, 3, 730, 1544, 3], dtype=int32)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from korpair.types import Pair, Target

ENCODE_CHUNK = 4096  # pairs per tokenizer call: big enough for the Rust threads, small enough for RAM


class EncodedPairs(Dataset):
    """Token ids of many pairs, flat, with offsets; item ``i`` is one pair's arrays.

    Loaded from disk (``EncodedPairs.load``), ``input_ids``, ``token_type_ids``
    and ``labels`` are read-only memory maps: pages are read when a batch needs
    them and the kernel may drop them again, so they cost no anonymous memory.
    Only ``offsets`` is held in RAM (8 bytes per pair), because every sampler
    needs all the lengths. Pickling (DataLoader workers under ``spawn``,
    ``ddp_spawn``) sends the folder, not the arrays; the receiver maps it again.

    Example::

        feats = EncodedPairs.load(folder)
        feats[0]["input_ids"], feats.lengths[:3]
        # (memmap([2, 417, ..., 3], dtype=int32), array([21, 17, 30]))
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
            # a class id, or a regression corpus's score
            item["labels"] = self.labels[i].item()
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


def encode_pairs(tokenizer, pairs: Sequence[Pair], label_map: Target | None,
                 max_length: int) -> EncodedPairs:
    """Tokenize pairs in memory as ``[CLS] a [SEP] b [SEP]``, truncating the longer text first.

    Holds all the features in RAM; for a corpus of any size use ``encode_pairs_cached``.
    ``label_map`` (a ``LabelMap``, or a ``ScoreRange`` for scores) encodes the
    gold labels: class ids (int64) or scores (float32).
    The ids are exactly those of ``tokenizer(premises, hypotheses, truncation=True,
    max_length=max_length)``, only faster (see ``_token_ids_fast``).

    Example::

        encode_pairs(tokenizer, [Pair("비가 온다", "날씨가 맑다", "contradiction")], labels, 64)[0]
        # {'input_ids': array([2, 1021, 388, 3, 730, 1544, 3], dtype=int32), 'token_type_ids': ..., 'labels': 2}
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
        labels = np.fromiter((label_map.encode(p.label) for p in pairs), dtype=label_map.dtype, count=len(pairs))
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
