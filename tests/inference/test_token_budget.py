"""A cap on each model call's padded tokens: the same answers, in calls that pad short pairs less.

Padded batches are what ONNX models and classifiers other than BERT run on; a BERT classifier on PyTorch's CPU
packs pairs instead (tests/inference/test_packing.py), so the predictor here is told not to."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from korpair import Predictor
from korpair.serve import ServeLimits, create_app
from korpair.serve.batcher import MicroBatcher
from korpair.types import Pair

SHORT = ("비가 온다", "맑다")
LONG = ("할머니가 시장에서 사과를 샀다 그리고 아이들이 운동장에서 축구를 한다", "회의는 오후 세 시에 끝났다 선생님은 숙제를 내 주셨다")


@pytest.fixture(scope="module")
def predictor(tiny_model_dir) -> Predictor:
    predictor = Predictor.from_pretrained(tiny_model_dir, device="cpu")
    predictor.runtime.packed = False
    return predictor


def recorded_calls(predictor, monkeypatch) -> list[tuple[int, int]]:
    """(pairs, padded length) of every call the runtime gets from now on."""
    calls: list[tuple[int, int]] = []
    real = predictor.runtime.logits

    def logits(batch):
        calls.append(tuple(batch["input_ids"].shape))
        return real(batch)

    monkeypatch.setattr(predictor.runtime, "logits", logits)
    return calls


def test_a_token_cap_splits_batches_without_changing_answers(predictor, monkeypatch):
    pairs = [LONG] * 3 + [SHORT] * 29
    whole = predictor.predict_logits(pairs, batch_size=32)
    calls = recorded_calls(predictor, monkeypatch)
    long_len = len(predictor.tokenizer(*LONG)["input_ids"])
    short_len = len(predictor.tokenizer(*SHORT)["input_ids"])
    capped = predictor.predict_logits(pairs, batch_size=32, max_tokens=long_len * 3)
    np.testing.assert_allclose(capped, whole, atol=1e-5)
    # the long pairs run together, the short ones apart, each call under the cap and padded to its own longest
    assert calls[0] == (3, long_len)
    assert all(n * length <= long_len * 3 for n, length in calls)
    assert {length for _, length in calls[1:]} == {short_len}
    assert sum(n for n, _ in calls) == 32
    padded_tokens = sum(n * length for n, length in calls)
    assert padded_tokens < 32 * long_len / 2  # one batch of 32 would pad every short pair to the long length


def test_a_batch_of_mixed_lengths_runs_in_calls_of_like_lengths(predictor, monkeypatch):
    # What a server's batch looks like: requests of every length together, no token cap needed to keep short
    # pairs from being padded to the longest.
    pairs = [LONG, SHORT] * 8
    whole = np.stack([predictor.predict_logits([pair])[0] for pair in pairs])
    calls = recorded_calls(predictor, monkeypatch)
    mixed = predictor.predict_logits(pairs, batch_size=32)
    np.testing.assert_allclose(mixed, whole, atol=1e-5)
    long_len = len(predictor.tokenizer(*LONG)["input_ids"])
    short_len = len(predictor.tokenizer(*SHORT)["input_ids"])
    assert sorted(calls) == sorted([(8, long_len), (8, short_len)])


def test_like_lengths_are_not_cut_into_calls_too_small_to_pay(predictor, monkeypatch):
    pairs = [LONG] * 3 + [SHORT] * 4  # fewer than MIN_GROUP pairs: one call, however mixed
    calls = recorded_calls(predictor, monkeypatch)
    predictor.predict_logits(pairs, batch_size=32)
    assert len(calls) == 1 and calls[0][0] == 7


def test_a_pair_longer_than_the_cap_still_runs_alone(predictor, monkeypatch):
    calls = recorded_calls(predictor, monkeypatch)
    [p] = predictor.predict([LONG], max_tokens=1)
    assert p.label in predictor.labels and calls == [(1, len(predictor.tokenizer(*LONG)["input_ids"]))]


def test_the_server_passes_its_token_budget_to_the_predictor(predictor, monkeypatch):
    seen = []
    real = predictor.predict

    def predict(pairs, batch_size=64, max_tokens=None):
        seen.append(max_tokens)
        return real(pairs, batch_size, max_tokens)

    monkeypatch.setattr(predictor, "predict", predict)

    async def one_request(batcher):
        async with batcher.running():
            return await batcher.predict([Pair(*SHORT)])

    [answer] = asyncio.run(one_request(MicroBatcher(predictor, max_batch_tokens=777)))
    assert answer.label in predictor.labels and seen == [777]
    assert ServeLimits().max_batch_tokens == 2048
    create_app(predictor, ServeLimits(max_batch_tokens=100))  # accepted; a cap of 0 is not:
    with pytest.raises(Exception, match="max_batch_tokens"):
        ServeLimits.from_dict({"max_batch_tokens": 0})
