"""A damaged features cache entry is found when it is opened, and encoded again with a warning.

Each entry holds a manifest (file names and sizes, a sha256 of the small files);
opening it checks that, so a truncated ``.npy``, same-size garbage in the
offsets or labels, a missing file or a missing or garbage manifest no longer
crash every later run (``mmap length is greater than file size``) or train on
garbage.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import KOREAN_TEXTS, task_overrides

import korpair
import korpair.features.encode as encode_module
from korpair.features import encode_pairs, encode_pairs_cached
from korpair.features.manifest import MANIFEST_NAME
from korpair.training.model import train_wordpiece_tokenizer
from korpair.types import NLI_LABELS, LabelMap, Pair

LABELS = LabelMap(NLI_LABELS)
PAIRS = [Pair(KOREAN_TEXTS[i % 10] * (1 + i % 3), KOREAN_TEXTS[(i + 3) % 10], NLI_LABELS[i % 3]) for i in range(60)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer(KOREAN_TEXTS * 5, vocab_size=300)


@pytest.fixture
def encodes(monkeypatch):
    """Counts the tokenizer passes (one per chunk encoded)."""
    calls = []
    real = encode_module.encode_pairs
    monkeypatch.setattr(encode_module, "encode_pairs", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def truncate(folder: Path, name: str) -> None:
    path = folder / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def scramble_data(folder: Path, name: str) -> None:
    """Same size, same .npy header, other numbers: what a bad sector or a stray write leaves."""
    array = np.load(folder / name)
    np.save(folder / name, array[::-1] + 1)


def garbage_manifest(folder: Path, name: str) -> None:
    (folder / MANIFEST_NAME).write_bytes(b"\x00\xff not json")


DAMAGE = {
    "truncated input_ids": lambda f: truncate(f, "input_ids.npy"),
    "truncated offsets": lambda f: truncate(f, "offsets.npy"),
    "same-size garbage in offsets": lambda f: scramble_data(f, "offsets.npy"),
    "same-size garbage in labels": lambda f: scramble_data(f, "labels.npy"),
    "labels file missing": lambda f: (f / "labels.npy").unlink(),
    "token_type_ids file missing": lambda f: (f / "token_type_ids.npy").unlink(),
    "input_ids header garbage": lambda f: (f / "input_ids.npy").write_bytes(
        b"\x93NUMPY garbage" + (f / "input_ids.npy").read_bytes()[14:]),
    "manifest missing (a 0.1 entry)": lambda f: (f / MANIFEST_NAME).unlink(),
    "manifest garbage": lambda f: garbage_manifest(f, MANIFEST_NAME),
    "manifest of other sizes": lambda f: (f / MANIFEST_NAME).write_text(json.dumps(
        {**json.loads((f / MANIFEST_NAME).read_text()), "files": {"input_ids.npy": {"bytes": 1}}})),
}


def assert_same(a, b) -> None:
    assert np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(a.input_ids, b.input_ids)
    assert np.array_equal(a.token_type_ids, b.token_type_ids)
    assert np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_entry_is_encoded_again_with_a_warning(tokenizer, tmp_path, encodes, caplog, damage):
    expected = encode_pairs(tokenizer, PAIRS, LABELS, 32)
    first = encode_pairs_cached(tokenizer, PAIRS, LABELS, 32, tmp_path)
    DAMAGE[damage](first.folder)
    with caplog.at_level(logging.WARNING, logger="korpair"):
        again = encode_pairs_cached(tokenizer, PAIRS, LABELS, 32, tmp_path)
    assert len(encodes) == 2, "the damaged entry is encoded again"
    assert again.folder == first.folder, "in place, under the same key"
    assert_same(again, expected)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(first.folder) in warning and "encoding" in warning, warning
    caplog.clear()
    third = encode_pairs_cached(tokenizer, PAIRS, LABELS, 32, tmp_path)
    # warnings only: a CLI test earlier in the session may have set korpair's logger to INFO
    assert len(encodes) == 2 and not [r for r in caplog.records if r.levelno >= logging.WARNING], \
        "the rebuilt entry is a plain hit"
    assert_same(third, expected)
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name], "no temporary or damaged folder left"


def test_a_damaged_entry_of_a_stream_is_encoded_again_from_the_stream(tokenizer, tmp_path, encodes, caplog):
    first = encode_pairs_cached(tokenizer, iter(PAIRS), LABELS, 32, tmp_path, source_key="train.jsonl:abc")
    truncate(first.folder, "input_ids.npy")
    with caplog.at_level(logging.WARNING, logger="korpair"):
        again = encode_pairs_cached(tokenizer, iter(PAIRS), LABELS, 32, tmp_path, source_key="train.jsonl:abc")
    assert len(encodes) == 2 and str(first.folder) in caplog.text
    assert_same(again, encode_pairs(tokenizer, PAIRS, LABELS, 32))


def test_an_iterator_without_a_key_replaces_a_damaged_entry_of_the_same_content(tokenizer, tmp_path, caplog):
    """Its key is known only once it is encoded; the entry found under it then must not be trusted blindly."""
    first = encode_pairs_cached(tokenizer, iter(PAIRS), LABELS, 32, tmp_path)
    scramble_data(first.folder, "offsets.npy")
    with caplog.at_level(logging.WARNING, logger="korpair"):
        again = encode_pairs_cached(tokenizer, iter(PAIRS), LABELS, 32, tmp_path)
    assert again.folder == first.folder and str(first.folder) in caplog.text
    assert_same(again, encode_pairs(tokenizer, PAIRS, LABELS, 32))
    assert_same(encode_pairs_cached(tokenizer, PAIRS, LABELS, 32, tmp_path), again)
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name]


def test_opening_hashes_only_the_small_files(tokenizer, tmp_path, monkeypatch):
    """Open stays cheap: sizes for every file, a content hash of the offsets and labels only."""
    import korpair.features.manifest as manifest_module

    first = encode_pairs_cached(tokenizer, PAIRS, LABELS, 32, tmp_path)
    hashed = []
    real = manifest_module.file_sha256
    monkeypatch.setattr(manifest_module, "file_sha256", lambda path: hashed.append(Path(path).name) or real(path))
    encode_pairs_cached(tokenizer, PAIRS, LABELS, 32, tmp_path)
    assert sorted(hashed) == ["labels.npy", "offsets.npy"]
    manifest = json.loads((first.folder / MANIFEST_NAME).read_text())
    assert {name: spec["bytes"] for name, spec in manifest["files"].items()} == {
        p.name: p.stat().st_size for p in first.folder.glob("*.npy")}


def test_processes_that_find_a_damaged_entry_encode_it_once(tokenizer, tmp_path):
    """The ranks of a job both find the damaged entry: one encodes it again, the other waits and reads it."""
    cache_dir = tmp_path / "cache"
    truncate(encode_pairs_cached(tokenizer, PAIRS, LABELS, 32, cache_dir).folder, "input_ids.npy")
    script = f"""
import sys, time
import korpair.features.cache as cache
from korpair.types import NLI_LABELS, LabelMap, Pair
from korpair.training.model import train_wordpiece_tokenizer
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from conftest import KOREAN_TEXTS

real = cache._write_features
def slow(*args, **kwargs):
    with open({str(tmp_path / "encodes.txt")!r}, "a") as fh:
        fh.write("encode\\n")
    time.sleep(1.5)  # long enough for the other process to arrive meanwhile
    return real(*args, **kwargs)
cache._write_features = slow
tokenizer = train_wordpiece_tokenizer(KOREAN_TEXTS * 5, vocab_size=300)
pairs = [Pair(KOREAN_TEXTS[i % 10] * (1 + i % 3), KOREAN_TEXTS[(i + 3) % 10], NLI_LABELS[i % 3]) for i in range(60)]
feats = cache.encode_pairs_cached(tokenizer, pairs, LabelMap(NLI_LABELS), 32, {str(cache_dir)!r})
print(len(feats), int(feats.input_ids.sum()), int(feats.offsets.sum()))
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    expected = encode_pairs(tokenizer, PAIRS, LABELS, 32)
    assert {out.strip() for out, _ in outputs} == {
        f"{len(expected)} {int(expected.input_ids.sum())} {int(expected.offsets.sum())}"}
    assert (tmp_path / "encodes.txt").read_text().count("encode") == 1
    assert sorted(p.name for p in cache_dir.iterdir() if p.name.startswith(".") or p.suffix == ".lock") == []


def test_a_run_trains_on_a_rebuilt_entry(pair_task_files, tmp_path, caplog):
    """The user's view: a run after the cache was damaged trains (today: mmap length ... file size)."""
    short = ["trainer.max_steps=3", "trainer.val_check_interval=3", "trainer.max_epochs=1"]
    first = korpair.train(None, task_overrides(pair_task_files, tmp_path / "first") + short)
    cache_dir = tmp_path / "cache"
    entries = [p for p in cache_dir.iterdir() if (p / "offsets.npy").is_file()]
    assert len(entries) == 2, "train and validation"
    truncate(entries[0], "input_ids.npy")
    scramble_data(entries[1], "offsets.npy")
    with caplog.at_level(logging.WARNING, logger="korpair"):
        second = korpair.train(None, task_overrides(pair_task_files, tmp_path / "second") + short)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert all(any(str(e) in w for w in warned) for e in entries), warned
    assert second.metrics["global_step"] == first.metrics["global_step"] == 3
    assert second.metrics["val_loss"] == pytest.approx(first.metrics["val_loss"], abs=1e-5), "same data, same run"
