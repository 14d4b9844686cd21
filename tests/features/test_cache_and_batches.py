"""Tokenization as pairs, the features cache, length grouping and dynamic padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import KOREAN_TEXTS

from korpair.features import LengthGroupedBatchSampler, PairCollator, encode_pairs, encode_pairs_cached
from korpair.training.model import train_wordpiece_tokenizer
from korpair.types import NLI_LABELS, LabelMap, Pair

LABELS = LabelMap(NLI_LABELS)


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer(KOREAN_TEXTS * 5, vocab_size=300)


def make_pairs(n: int) -> list[Pair]:
    return [Pair(KOREAN_TEXTS[i % 10] * (1 + i % 3), KOREAN_TEXTS[(i + 3) % 10], NLI_LABELS[i % 3]) for i in range(n)]


def test_pair_encoding_matches_tokenizer_and_truncates(tokenizer):
    pairs = make_pairs(20)
    feats = encode_pairs(tokenizer, pairs, LABELS, max_length=24)
    for i, p in enumerate(pairs):
        expected = tokenizer(p.premise, p.hypothesis, truncation="longest_first", max_length=24)
        item = feats[i]
        assert item["input_ids"].tolist() == expected["input_ids"]
        assert item["token_type_ids"].tolist() == expected["token_type_ids"]
        assert item["labels"] == LABELS.id(p.label)
    assert feats.lengths.max() <= 24
    # the second text keeps tokens: longest_first trims the longer text
    long_item = feats[2]
    assert 1 in long_item["token_type_ids"].tolist()


def test_cache_hits_and_misses(tokenizer, tmp_path, monkeypatch):
    import korpair.features.encode as data

    calls = []
    real = data.encode_pairs
    monkeypatch.setattr(data, "encode_pairs", lambda *a, **k: calls.append(1) or real(*a, **k))
    pairs = make_pairs(30)
    first = encode_pairs_cached(tokenizer, pairs, LABELS, 32, tmp_path)
    second = encode_pairs_cached(tokenizer, pairs, LABELS, 32, tmp_path)
    assert len(calls) == 1, "second run must read the cache"
    assert isinstance(second.input_ids, np.memmap)
    assert np.array_equal(first.input_ids, second.input_ids)

    encode_pairs_cached(tokenizer, pairs, LABELS, 16, tmp_path)  # max length changed
    assert len(calls) == 2
    changed = pairs[:-1] + [Pair("완전히 다른 문장", "또 다른 문장", "neutral")]
    encode_pairs_cached(tokenizer, changed, LABELS, 32, tmp_path)  # data changed
    assert len(calls) == 3
    other_tok = train_wordpiece_tokenizer(KOREAN_TEXTS * 5, vocab_size=120)
    encode_pairs_cached(other_tok, pairs, LABELS, 32, tmp_path)  # tokenizer changed
    assert len(calls) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folders left"


def test_sampler_covers_every_index_once_and_groups_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 64, size=1000)
    sampler = LengthGroupedBatchSampler(lengths, 32, shuffle=True, seed=1)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000)) and len(batches) == len(sampler)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    plain = LengthGroupedBatchSampler(lengths, 32, shuffle=True, seed=1, group_by_length=False)
    padded_plain = sum(len(b) * lengths[b].max() for b in plain)
    assert padded < 0.8 * padded_plain, "grouping must cut padding"
    sampler.set_epoch(1)
    assert [i for b in sampler for i in b] != flat, "a new epoch reshuffles"


def test_sampler_shards_across_ranks():
    lengths = np.arange(103) % 17 + 3
    train = [list(LengthGroupedBatchSampler(lengths, 8, num_replicas=2, rank=r, seed=0)) for r in (0, 1)]
    assert len(train[0]) == len(train[1]), "every rank runs the same number of steps"
    evals = [list(LengthGroupedBatchSampler(lengths, 8, shuffle=False, num_replicas=2, rank=r, even=False))
             for r in (0, 1)]
    seen = [i for rank in evals for b in rank for i in b]
    assert sorted(seen) == list(range(103)), "evaluation sees every pair exactly once"


def test_sampler_resumes_inside_its_epoch_only():
    lengths = np.arange(200) % 31 + 3
    sampler = LengthGroupedBatchSampler(lengths, 8, seed=4)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.resume(2, 5)
    assert list(sampler) == whole[5:], "the rest of the interrupted epoch, in the same order"
    assert list(sampler) == whole, "only the first pass after resuming skips"
    sampler.resume(1, 5)
    assert list(sampler) == whole, "a position in another epoch skips nothing"
    for done in (0, len(whole)):  # nothing trained yet, or the epoch was complete
        sampler.resume(2, done)
        assert list(sampler) == whole


def test_data_module_position_is_checkpoint_state(tokenizer):
    from types import SimpleNamespace

    from korpair.config import DataConfig
    from korpair.features import PairDataModule

    feats = encode_pairs(tokenizer, make_pairs(40), LABELS, 32)
    data = PairDataModule(feats, feats, DataConfig(batch_size=4), pad_id=0, seed=3)
    data.trainer = SimpleNamespace(training=True, current_epoch=1, world_size=1, global_rank=0,
                                   strategy=SimpleNamespace(root_device=SimpleNamespace(type="cpu")))
    batches = iter(data.train_dataloader())
    for _ in range(3):  # as Lightning does: each batch goes through the transfer hook before the step
        data.on_after_batch_transfer(next(batches), 0)
    state = data.state_dict()
    assert state == {"epoch": 1, "train_batches_done": 3}

    restored = PairDataModule(feats, feats, DataConfig(batch_size=4), pad_id=0, seed=3)
    restored.trainer = data.trainer
    restored.load_state_dict(state)
    loader = restored.train_dataloader()
    loader.batch_sampler.set_epoch(1)
    fresh = data.train_dataloader()
    fresh.batch_sampler.set_epoch(1)
    assert [b["input_ids"].tolist() for b in loader] == [b["input_ids"].tolist() for b in fresh][3:]
    data.trainer.current_epoch = 2
    assert data.state_dict() == {"epoch": 2, "train_batches_done": 0}, "a new epoch starts at its first batch"


def test_collator_pads_to_batch_longest(tokenizer):
    feats = encode_pairs(tokenizer, make_pairs(6), LABELS, 64)
    batch = PairCollator(pad_id=tokenizer.pad_token_id, pad_to_multiple_of=8)([feats[i] for i in range(6)])
    longest = int(feats.lengths[:6].max())
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and longest <= width < longest + 8
    assert batch["attention_mask"].sum(1).tolist() == feats.lengths[:6].tolist()
    assert batch["labels"].tolist() == [LABELS.id(p.label) for p in make_pairs(6)]


def test_killed_encoders_temporary_folders_are_removed(tokenizer, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".encoding.{dead.pid}@{host}.abc123"
    alive = tmp_path / f".encoding.{os.getpid()}@{host}.def456"  # still encoding: must be left alone
    other_host = tmp_path / f".encoding.{dead.pid}@not-{host}.ghi789"  # cannot be checked from here
    for folder in (orphan, alive, other_host):
        folder.mkdir()
        (folder / "input_ids.npy").write_bytes(b"partial")
    encode_pairs_cached(tokenizer, make_pairs(5), LABELS, 32, tmp_path)
    assert not orphan.exists()
    assert alive.exists() and other_host.exists()


def test_processes_encoding_the_same_data_encode_it_once(tmp_path):
    """The ranks of a torchrun job start together: one encodes, the others wait and read the cache."""
    import subprocess
    import sys

    script = f"""
import sys, time
import korpair.features.cache as data
from korpair.types import NLI_LABELS, LabelMap, Pair
from korpair.training.model import train_wordpiece_tokenizer
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from conftest import KOREAN_TEXTS

real = data._write_features
def slow(*args, **kwargs):
    with open({str(tmp_path / "encodes.txt")!r}, "a") as fh:
        fh.write("encode\\n")
    time.sleep(1.5)  # long enough for the other process to arrive meanwhile
    return real(*args, **kwargs)
data._write_features = slow
tokenizer = train_wordpiece_tokenizer(KOREAN_TEXTS * 5, vocab_size=300)
pairs = [Pair(KOREAN_TEXTS[i % 10], KOREAN_TEXTS[(i + 3) % 10], NLI_LABELS[i % 3]) for i in range(40)]
feats = data.encode_pairs_cached(tokenizer, pairs, LabelMap(NLI_LABELS), 32, {str(tmp_path / "cache")!r})
print(len(feats), int(feats.input_ids.sum()))
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1, "every process reads the same features"
    assert (tmp_path / "encodes.txt").read_text().count("encode") == 1
    assert not list((tmp_path / "cache").glob("*.lock")), "lock files are removed"
