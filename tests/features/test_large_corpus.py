"""Corpora larger than memory: streamed encoding into memory-mapped features.

The 200k-pair test encodes in child processes, so each peak RSS (``VmHWM``
read from ``/proc/self/status`` by the child) belongs to that encoding alone,
not to pytest and the other tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from korpair.corpora import iter_pairs, read_pairs
from korpair.errors import CorpusError
from korpair.features import EncodedPairs, encode_pairs, encode_pairs_cached
from korpair.features.encode import ENCODE_CHUNK
from korpair.training.model import train_wordpiece_tokenizer
from korpair.types import NLI_LABELS, LabelMap, Pair
from tools.sample_corpus import generate_nli_pairs

LABELS = LabelMap(NLI_LABELS)
BIG = 200_000
SMALL = 20_000
MiB = 1024 * 1024

# Run in a fresh interpreter: import what training imports, load the tokenizer, then (unless
# n is 0) stream the first n pairs of the file into the cache, and print the peak RSS.
CHILD = r"""
import hashlib, itertools, json, sys, time
from transformers import PreTrainedTokenizerFast
from korpair.corpora import iter_pairs
from korpair.types import NLI_LABELS, LabelMap
from korpair.features import encode_pairs_cached

tok_dir, path, cache_dir, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
started = time.perf_counter()
count = 0
if n:
    pairs = itertools.islice(iter_pairs(path, strict=False), n)
    key = hashlib.sha256(f"{path}:{n}".encode()).hexdigest()
    feats = encode_pairs_cached(tokenizer, pairs, LabelMap(NLI_LABELS), 64, cache_dir, source_key=key)
    count = len(feats)
seconds = time.perf_counter() - started
hwm_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"pairs": count, "seconds": seconds, "peak_rss": hwm_kib * 1024}))
"""


def unique_pairs(n: int, base: list[dict]) -> list[dict]:
    """``n`` distinct pairs from a few thousand generated ones: the premise gets the row number.

    ``generate_nli_pairs`` makes about 15k pairs/s here, too slow for 200k in a test.
    """
    return [{**base[i % len(base)], "premise": f"{base[i % len(base)]['premise']} {i}"} for i in range(n)]


@pytest.fixture(scope="module")
def base_pairs() -> list[dict]:
    return list(generate_nli_pairs(3000, seed=0))


@pytest.fixture(scope="module")
def tokenizer(base_pairs):
    # digits are in the vocabulary, so the row numbers are real tokens, not [UNK]
    texts = [t for p in base_pairs for t in (p["premise"], p["hypothesis"])] + list("0123456789")
    return train_wordpiece_tokenizer(texts, vocab_size=8000)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory, base_pairs) -> Path:
    path = tmp_path_factory.mktemp("big") / "train.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for row in unique_pairs(BIG, base_pairs):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def as_pairs(rows: list[dict]) -> list[Pair]:
    return [Pair(r["premise"], r["hypothesis"], r["label"]) for r in rows]


def assert_same_features(a: EncodedPairs, b: EncodedPairs, n: int) -> None:
    """The first ``n`` pairs of ``a`` and ``b`` have the same ids, segments and labels."""
    assert np.array_equal(a.offsets[: n + 1], b.offsets[: n + 1])
    end = int(a.offsets[n])
    assert np.array_equal(a.input_ids[:end], b.input_ids[:end])
    assert np.array_equal(a.token_type_ids[:end], b.token_type_ids[:end])
    assert np.array_equal(a.labels[:n], b.labels[:n])


def test_200k_pairs_stream_in_bounded_memory(big_corpus, tokenizer, tmp_path):
    """Streaming 200k pairs from a JSONL file stays within 64 MiB of an idle interpreter.

    Three children run side by side: one only imports korpair (torch, lightning,
    transformers) and loads the tokenizer (the baseline, about 375 MiB here), one
    streams the first 20k pairs and one all 200k. The bounds:

    * 200k child <= baseline + 64 MiB. What the streamed path holds is one chunk of
      4096 pairs: the Rust encodings and Python token lists of the chunk (about
      3 KiB a pair, so ~12 MiB) and its numpy copies, plus the offsets of the whole
      corpus (8 bytes a pair, 1.5 MiB at 200k); measured: +26 to +34 MiB. A
      list-based encoding of the same file (``read_pairs`` then the old
      in-memory ``encode_pairs``) holds 200k ``Pair`` objects and every token
      before writing: measured +206 MiB, far above the bound.
    * 200k child <= 20k child + 16 MiB: ten times the corpus may add only the
      offsets of the extra 180k pairs (1.4 MiB) and allocator noise; the
      features themselves grow by ~25 MiB on disk, the list-based path by ~180 MiB.
    """
    tok_dir = tmp_path / "tokenizer"
    tokenizer.save_pretrained(tok_dir)
    cache = tmp_path / "cache"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true"}  # the default outside tests: worker threads
    started = time.perf_counter()
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(tok_dir), str(big_corpus), str(cache), str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for n in (0, SMALL, BIG)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    baseline, small, big = results
    wall = time.perf_counter() - started
    report = {name: round(r["peak_rss"] / MiB, 1) for name, r in zip(("baseline", "20k", "200k"), results)}
    print(f"peak RSS MiB {report}; 200k encoded in {big['seconds']:.1f} s, all children {wall:.1f} s")
    assert big["pairs"] == BIG and small["pairs"] == SMALL
    assert big["peak_rss"] <= baseline["peak_rss"] + 64 * MiB, report
    assert big["peak_rss"] <= small["peak_rss"] + 16 * MiB, report

    # The child's features equal an in-memory encode (first 5000 pairs: across a chunk boundary).
    [folder] = [p for p in cache.iterdir() if len(EncodedPairs.load(p)) == BIG]
    feats = EncodedPairs.load(folder)
    assert isinstance(feats.input_ids, np.memmap) and isinstance(feats.labels, np.memmap)
    n = ENCODE_CHUNK + 904
    head = read_pairs(big_corpus, limit=n)
    assert_same_features(feats, encode_pairs(tokenizer, head, LABELS, 64), n)
    assert feats.labels[-1] == LABELS.id(json.loads(big_corpus.read_text().splitlines()[-1])["label"])

    # Second run with the same source key: a cache hit that never reads the pairs.
    def untouchable():
        raise AssertionError("a cache hit must not read the pairs")
        yield  # pragma: no cover

    key = hashlib.sha256(f"{big_corpus}:{BIG}".encode()).hexdigest()
    again = encode_pairs_cached(tokenizer, untouchable(), LABELS, 64, cache, source_key=key)
    assert again.folder == folder and len(again) == BIG


def test_stream_equals_list_encoding_and_shares_its_cache_entry(tokenizer, base_pairs, tmp_path, monkeypatch):
    import korpair.features.encode as data

    pairs = as_pairs(unique_pairs(2 * ENCODE_CHUNK + 100, base_pairs))
    calls = []
    real = data.encode_pairs
    monkeypatch.setattr(data, "encode_pairs", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    streamed = encode_pairs_cached(tokenizer, iter(pairs), LABELS, 48, tmp_path)
    assert calls == [ENCODE_CHUNK, ENCODE_CHUNK, 100], "one tokenizer pass per chunk"
    assert_same_features(streamed, real(tokenizer, pairs, LABELS, 48), len(pairs))
    # The same content as a list has the same key: a hit, no tokenization.
    listed = encode_pairs_cached(tokenizer, pairs, LABELS, 48, tmp_path)
    assert len(calls) == 3 and listed.folder == streamed.folder
    assert [p.name for p in tmp_path.iterdir()] == [streamed.folder.name], "no temporary folders left"


def test_unlabelled_and_empty_streams(tokenizer, tmp_path):
    unlabelled = [Pair("비가 온다", "날씨가 맑다"), Pair("눈이 온다", "춥다")]
    feats = encode_pairs_cached(tokenizer, iter(unlabelled), LABELS, 32, tmp_path)
    assert feats.labels is None and len(feats) == 2
    empty = encode_pairs_cached(tokenizer, iter([]), LABELS, 32, tmp_path)
    assert len(empty) == 0 and empty.labels is None and empty.input_ids.shape == (0,)


def test_bad_row_mid_stream_leaves_nothing(tokenizer, base_pairs, write_jsonl, tmp_path):
    rows = unique_pairs(ENCODE_CHUNK + 10, base_pairs)
    rows[ENCODE_CHUNK + 5] = {**rows[ENCODE_CHUNK + 5], "hypothesis": " "}
    path = write_jsonl(rows)
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError, match="empty second text"):
        encode_pairs_cached(tokenizer, iter_pairs(path, strict=False), LABELS, 32, cache, source_key="k")
    assert list(cache.iterdir()) == [], "no half-written features, no temporary folder"


def test_features_pickle_as_their_folder(tokenizer, base_pairs, tmp_path):
    feats = encode_pairs_cached(tokenizer, as_pairs(unique_pairs(3000, base_pairs)), LABELS, 32, tmp_path)
    blob = pickle.dumps(feats)
    assert len(blob) < 1000, "DataLoader workers and ddp_spawn get the folder, not a copy of the arrays"
    back = pickle.loads(blob)
    assert isinstance(back.input_ids, np.memmap) and back[7]["input_ids"].tolist() == feats[7]["input_ids"].tolist()


# ---------------------------------------------------------------- streamed training split


def test_streamed_train_split_equals_the_list_and_counts_drops(base_pairs, write_jsonl):
    from korpair.config import CorpusConfig
    from korpair.corpora import PairStream, load_splits

    rows = unique_pairs(500, base_pairs)
    rows[10] = {**rows[10], "label": "-"}
    cfg = CorpusConfig(name="files", train_file=write_jsonl(rows, "train.jsonl"),
                       validation_file=write_jsonl(rows[:50], "dev.jsonl"), max_train_pairs=400)
    listed, streamed = load_splits(cfg), load_splits(cfg, stream_train=True)
    assert isinstance(streamed.train, PairStream) and len(streamed.train) == 400
    assert list(streamed.train) == listed.train and list(streamed.train) == listed.train, "re-iterable"
    assert streamed.target == listed.target and streamed.dropped == listed.dropped
    assert sum(streamed.dropped.values()) == 2, "the '-' row, once in train and once in validation"


def test_streamed_train_split_reports_every_bad_row_and_keys_on_content(base_pairs, write_jsonl, tmp_path):
    from korpair.config import CorpusConfig
    from korpair.corpora import stream_split

    rows = unique_pairs(300, base_pairs)
    path = write_jsonl(rows, "train.jsonl")
    cfg = CorpusConfig(name="files", train_file=path, validation_file=path)
    key = stream_split(cfg, "train").key
    rows[-1] = {**rows[-1], "premise": "바뀐 문장"}
    write_jsonl(rows, "train.jsonl")
    assert stream_split(cfg, "train").key != key, "the key follows the file's content"
    for i in (5, 150, 299):
        rows[i] = {**rows[i], "hypothesis": ""}
    write_jsonl(rows, "train.jsonl")
    with pytest.raises(CorpusError, match="3 bad row") as err:
        stream_split(cfg, "train")
    assert all(f"train.jsonl:{i + 1}:" in str(err.value) for i in (5, 150, 299))
