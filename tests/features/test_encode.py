"""Fast pair encoding: each distinct sentence tokenized once, ids identical to ``tokenizer(a, b)``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KOREAN_TEXTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

import korpair.features.encode as data
from korpair.features import encode_pairs
from korpair.training.model import train_wordpiece_tokenizer
from korpair.types import Pair


def reference(tokenizer, pairs, max_length):
    """What every caller of a Hugging Face tokenizer would write."""
    enc = tokenizer([p.premise for p in pairs], [p.hypothesis for p in pairs], truncation="longest_first",
                    max_length=max_length, return_token_type_ids=True)
    return enc["input_ids"], enc["token_type_ids"]


def wordpiece(lowercase: bool = False, truncation_side: str = "right"):
    tok = train_wordpiece_tokenizer(KOREAN_TEXTS * 5 + ["Seoul Busan KTX"], vocab_size=200)
    if lowercase:
        tok.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.truncation_side = truncation_side
    return tok


def bpe_roberta():
    """A byte-level BPE with RoBERTa's ``<s> a </s></s> b </s>`` and no token type ids."""
    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.train_from_iterator(KOREAN_TEXTS * 5, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"])


def template(pair: str):
    """A WordPiece tokenizer with an unusual pair template."""
    tok = wordpiece()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair=pair, special_tokens=[("[CLS]", tok.cls_token_id), ("[SEP]", tok.sep_token_id)])
    return tok


TOKENIZERS = {
    "wordpiece": wordpiece,
    "wordpiece-lowercase": lambda: wordpiece(lowercase=True),
    "wordpiece-truncate-left": lambda: wordpiece(truncation_side="left"),
    "bpe-roberta": bpe_roberta,
    "double-sep": lambda: template("[CLS] $A:0 [SEP]:0 [SEP]:1 $B:1 [SEP]:1"),
    "suffix-only": lambda: template("$A:0 [SEP]:0 $B:0"),
}


def nli_like_pairs():
    """Every premise three times, some pairs far longer than the max length, repeats and odd texts."""
    pairs = []
    for i, premise in enumerate(KOREAN_TEXTS):
        for k in range(3):
            pairs.append(Pair(premise * (1 + (i + k) % 4), KOREAN_TEXTS[(i + k + 1) % 10], None))
    pairs += [Pair("Seoul [SEP] Busan", "KTX", None), Pair("\u200b", "비가 온다", None),
              Pair("가게 문이 닫혀 있었다", "가게 문이 닫혀 있었다", None), Pair("😀 커피", "\t커피\n", None)]
    return pairs


@pytest.mark.parametrize("name", list(TOKENIZERS))
@pytest.mark.parametrize("max_length", [6, 12, 24, 64, 512])
def test_fast_path_equals_the_tokenizer_call(name, max_length, monkeypatch):
    tokenizer = TOKENIZERS[name]()
    pairs = nli_like_pairs()
    # the fast path must really be taken: the reference call is not there to fall back on
    monkeypatch.setattr(data, "_token_ids_call", lambda *a: pytest.fail("fell back to the tokenizer call"))
    feats = encode_pairs(tokenizer, pairs, None, max_length)
    ids, types = reference(tokenizer, pairs, max_length)
    assert [feats[i]["input_ids"].tolist() for i in range(len(pairs))] == ids
    if "token_type_ids" in tokenizer.model_input_names:
        assert [feats[i]["token_type_ids"].tolist() for i in range(len(pairs))] == types
    else:
        assert feats.token_type_ids is None
    assert feats.lengths.max() <= max_length


def test_backend_state_is_restored():
    tokenizer = wordpiece()
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(7, strategy="only_second")
    backend.enable_padding(length=40, pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    before = (backend.truncation, backend.padding)
    encode_pairs(tokenizer, nli_like_pairs(), None, 12)
    assert (backend.truncation, backend.padding) == before


@pytest.mark.parametrize("pair", ["$B:0 [SEP]:0 $A:1", "[CLS] $A:0 [SEP] $A:0 $B:1"])
def test_layouts_it_cannot_rebuild_fall_back_to_the_tokenizer_call(pair):
    tokenizer = template(pair)
    pairs = nli_like_pairs()
    assert data._token_ids_fast(tokenizer, [p.premise for p in pairs], [p.hypothesis for p in pairs], 64) is None
    ids, types = reference(tokenizer, pairs, 64)
    feats = encode_pairs(tokenizer, pairs, None, 64)
    assert [feats[i]["input_ids"].tolist() for i in range(len(pairs))] == ids
    assert [feats[i]["token_type_ids"].tolist() for i in range(len(pairs))] == types


@pytest.fixture(scope="module")
def wp():
    return wordpiece()


PIECES = list("가나다라마바사 민수는어제공원에서 자전거를탔다 ab.,?!\u0301\x00") + ["[SEP]", "[UNK]", " [CLS] "]
TEXT = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=12), max_length=st.integers(4, 48))
def test_any_texts_encode_like_the_tokenizer_call(wp, texts, max_length):
    pairs = [Pair(a, b, None) for a, b in texts]
    feats = encode_pairs(wp, pairs, None, max_length)
    ids, types = reference(wp, pairs, max_length)
    assert [feats[i]["input_ids"].tolist() for i in range(len(pairs))] == ids
    assert [feats[i]["token_type_ids"].tolist() for i in range(len(pairs))] == types
    assert feats.input_ids.dtype == np.int32 and feats.token_type_ids.dtype == np.int8
