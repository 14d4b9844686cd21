"""Packed inference: several pairs a row, no padding, and every pair's logits those of the padded batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, ElectraConfig, ElectraForSequenceClassification

from korpair import Predictor
from korpair.features import encode_pairs
from korpair.inference.packing import (
    PACKED_INPUTS,
    ROW_TOKENS,
    PackedClassifier,
    pack_rows,
    packable,
    packed_calls,
    split_rows,
)
from korpair.inference.runtimes import TorchRuntime
from korpair.types import Pair

SHORT = ("비가 온다", "맑다")
LONG = ("할머니가 시장에서 사과를 샀다 그리고 아이들이 운동장에서 축구를 한다", "회의는 오후 세 시에 끝났다 선생님은 숙제를 내 주셨다")
MIXED = [("비가 많이 와서 경기가 취소되었다", "경기는 열렸다"), SHORT, LONG, ("오늘은 맑다", "비가 온다"),
         ("아이들이 공원에서 뛰어논다", "아이들이 밖에 있다"), SHORT, ("민수는 지영보다 먼저 도착했다", "지영이 먼저 도착했다")] * 5


@pytest.fixture(scope="module")
def predictor(tiny_model_dir) -> Predictor:
    return Predictor.from_pretrained(tiny_model_dir, device="cpu")


def padded_logits(predictor, pairs, batch_size=64) -> np.ndarray:
    predictor.runtime.packed = False
    try:
        return predictor.predict_logits(pairs, batch_size)
    finally:
        predictor.runtime.packed = True


@pytest.mark.parametrize("seed", range(5))
def test_rows_hold_every_pair_once_within_their_room(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 90, size=int(rng.integers(1, 300)))
    for max_pairs in (None, 1, 3):
        rows = pack_rows(lengths, 64, max_pairs)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        for row in rows:
            assert lengths[row].sum() <= max(64, lengths.max())
            assert max_pairs is None or len(row) <= max_pairs
    # short pairs share rows: 12 pairs of 10 tokens fill two rows of 64 (6 each)
    assert [len(r) for r in pack_rows(np.full(12, 10), 64)] == [6, 6]


def test_calls_keep_to_the_batch_size_and_token_cap_and_lay_pairs_out_as_the_model_reads_them(predictor):
    feats = encode_pairs(predictor.tokenizer, [Pair(*p) for p in MIXED], None, 64)
    cls_id = predictor.tokenizer.cls_token_id
    for batch_size, max_tokens in ((64, None), (5, None), (64, 128), (1, None)):
        seen = []
        for order, inputs in packed_calls(feats, batch_size, max_tokens):
            rows, width = inputs["input_ids"].shape
            assert set(inputs) == set(PACKED_INPUTS) and all(v.dtype == np.int64 for v in inputs.values())
            assert len(order) == len(inputs["cls_index"]) <= batch_size
            assert max_tokens is None or rows == 1 or rows * width <= max_tokens
            flat = {name: inputs[name].reshape(-1) for name in PACKED_INPUTS[:4]}
            for i, first in zip(order, inputs["cls_index"]):
                k = len(feats[i]["input_ids"])
                np.testing.assert_array_equal(flat["input_ids"][first:first + k], feats[i]["input_ids"])
                np.testing.assert_array_equal(flat["token_type_ids"][first:first + k], feats[i]["token_type_ids"])
                np.testing.assert_array_equal(flat["position_ids"][first:first + k], np.arange(k))
                assert flat["input_ids"][first] == cls_id
                assert len(set(flat["segment_ids"][first:first + k])) == 1 and flat["segment_ids"][first] > 0
            seen += order.tolist()
        assert sorted(seen) == list(range(len(MIXED)))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_row_gives_each_pair_the_logits_of_the_padded_batch(tiny_model_dir, attention):
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), attn_implementation=attention)
    predictor = Predictor(TorchRuntime(model, device="cpu"), Predictor.from_pretrained(tiny_model_dir).tokenizer,
                          ["entailment", "neutral", "contradiction"], max_seq_length=64)
    assert predictor.runtime.packed
    expected = padded_logits(predictor, MIXED)
    for batch_size in (1, 7, 64):
        np.testing.assert_allclose(predictor.predict_logits(MIXED, batch_size), expected, atol=1e-5)
    # the rows' tails (segment 0) and the split among streams change nothing either
    feats = encode_pairs(predictor.tokenizer, [Pair(*p) for p in MIXED], None, 64)
    [(order, inputs)] = packed_calls(feats, len(MIXED))
    assert (inputs["segment_ids"] == 0).any()
    graph = PackedClassifier(model).eval()
    with torch.inference_mode():
        parts = [graph(*(torch.from_numpy(p[n]) for n in PACKED_INPUTS)) for p in split_rows(inputs, 3)]
    np.testing.assert_allclose(torch.cat(parts).numpy(), expected[order], atol=1e-5)


def test_the_last_layer_runs_its_feed_forward_on_the_cls_tokens_alone(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir)).eval()
    feats = encode_pairs(Predictor.from_pretrained(tiny_model_dir).tokenizer, [Pair(*p) for p in MIXED], None, 64)
    [(order, inputs)] = packed_calls(feats, len(MIXED))
    seen = []
    for layer in model.bert.encoder.layer:
        layer.intermediate.dense.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[:-1]))
    with torch.inference_mode():
        PackedClassifier(model)(*(torch.from_numpy(inputs[n]) for n in PACKED_INPUTS))
    assert seen[:-1] == [inputs["input_ids"].shape] * (len(seen) - 1)  # earlier layers: every token
    assert seen[-1] == (len(MIXED),)  # the last: one token a pair


def test_the_predictor_packs_on_a_cpu_and_pads_less(predictor, monkeypatch):
    assert predictor.runtime.packed
    calls = []
    real = predictor.runtime.packed_logits
    monkeypatch.setattr(predictor.runtime, "packed_logits", lambda inputs: calls.append(inputs) or real(inputs))
    pairs = [LONG, SHORT] * 16  # a server's batch: lengths mixed
    logits = predictor.predict_logits(pairs, batch_size=32, max_tokens=2048)
    np.testing.assert_allclose(logits, padded_logits(predictor, pairs, 32), atol=1e-5)
    real_tokens = sum(len(predictor.tokenizer(*p)["input_ids"]) for p in pairs)
    packed_tokens = sum(c["input_ids"].size for c in calls)
    assert packed_tokens < 1.2 * real_tokens  # padded to the longest, it was about twice the real tokens
    assert sum(len(c["cls_index"]) for c in calls) == 32
    assert predictor.predict([]) == [] and len(predictor.predict([SHORT])) == 1


def test_models_packing_does_not_know_run_padded(tiny_model_dir):
    electra = ElectraForSequenceClassification(ElectraConfig(
        vocab_size=300, embedding_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=3))
    assert not packable(electra)
    with pytest.raises(ValueError, match="BERT sequence classifiers only"):
        PackedClassifier(electra)
    runtime = TorchRuntime(electra, device="cpu")
    assert not runtime.packed
    tokenizer = Predictor.from_pretrained(tiny_model_dir).tokenizer
    predictor = Predictor(runtime, tokenizer, ["a", "b", "c"], max_seq_length=64)
    assert predictor.predict_logits(MIXED).shape == (len(MIXED), 3)
    assert ROW_TOKENS >= 64  # a model's trained max length (64 here) fits a row
