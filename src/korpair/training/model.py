"""The network and its tokenizer: a pretrained checkpoint, or a small BERT built from scratch.

Example::

    tokenizer, model = build_model_and_tokenizer(ModelConfig(from_scratch=True, vocab_size=500),
                                                 LabelMap(("yes", "no")), texts=["비가 온다", "눈이 온다"])
    model.config.id2label  # {0: 'yes', 1: 'no'}
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from korpair.config import ModelConfig
from korpair.errors import ModelFolderError, loading_error
from korpair.model_folder import check_model_folder, check_tokenizer_files
from korpair.types import ScoreRange, Target

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int = 512
                              ) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer whose vocabulary is learnt from ``texts``.

    The vocabulary is every character (alone and as a ``##`` continuation) plus the
    most frequent whole words, word-initial pieces and ``##`` word endings, which
    suits Korean, where endings (``##었다``, ``##지``) carry much of the meaning.
    It is built here rather than with ``tokenizers``' WordPieceTrainer because
    that trainer's vocabulary changes from run to run, and a from-scratch model
    must be reproducible from its seed. Case and accents are kept: lower-casing
    or stripping accents would decompose Hangul.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces: Counter[str] = Counter()
    chars: set[str] = set()
    for word, n in words.items():
        chars.update(word)
        pieces[word] += n
        for k in range(1, len(word)):
            pieces[word[:k]] += n
            pieces["##" + word[k:]] += n
    vocab = list(SPECIAL_TOKENS) + sorted(chars) + sorted("##" + c for c in chars)
    room = max(vocab_size - len(vocab), 0)
    taken = set(vocab)
    ranked = sorted((p for p in pieces if p not in taken), key=lambda p: (-pieces[p], p))
    vocab += ranked[:room]

    backend = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                         max_input_chars_per_word=100))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.WordPiece()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def head_config(target: Target) -> dict:
    """The model-config keys that shape the output layer for ``target``.

    >>> head_config(ScoreRange(0, 5))["problem_type"]
    'regression'
    """
    if isinstance(target, ScoreRange):
        return dict(num_labels=1, id2label={0: "score"}, label2id={"score": 0}, problem_type="regression")
    return dict(num_labels=len(target), id2label=target.id2label, label2id=target.label2id,
                problem_type="single_label_classification")


def build_model_and_tokenizer(cfg: ModelConfig, labels: Target, texts: Iterable[str] = (),
                              max_seq_length: int = 512):
    """Return ``(tokenizer, model)`` with the label names in the model config.

    A ``ScoreRange`` target gives a regression model: one output, and
    ``problem_type="regression"`` so that transformers (its loss, the
    ``pipeline``) reads the output as a score.

    A local ``cfg.name_or_path`` folder is checked before it is loaded
    (``check_model_folder``): damaged weights, a pickle that ``weights_only``
    refuses, a missing or damaged tokenizer are each a ``ModelFolderError``
    naming the file. Its labels and head may be anything: they are replaced.
    """
    label_kwargs = head_config(labels)
    if cfg.from_scratch:
        positions = max(512, max_seq_length)
        tokenizer = train_wordpiece_tokenizer(texts, cfg.vocab_size, model_max_length=positions)
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
            hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
            max_position_embeddings=positions, pad_token_id=tokenizer.pad_token_id, **label_kwargs,
        )
        return tokenizer, BertForSequenceClassification(config)
    common = dict(trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    local = Path(cfg.name_or_path).is_dir()
    if local:
        check_model_folder(cfg.name_or_path, base_model=True)
    part = "tokenizer"
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.name_or_path, use_fast=True, **common)
        part = "model"
        config = AutoConfig.from_pretrained(cfg.name_or_path, **label_kwargs, **common)
        # A head trained for other labels is replaced, not silently reused.
        model = AutoModelForSequenceClassification.from_pretrained(
            cfg.name_or_path, config=config, ignore_mismatched_sizes=True, use_safetensors=None, **common
        )
    except OSError as err:
        raise ModelFolderError(
            f"cannot load model {cfg.name_or_path!r}: {err}\n"
            "Give a Hugging Face hub name (needs internet), a local folder with config.json, "
            "or set model.from_scratch=true to build a small BERT offline."
        ) from None
    except Exception as err:  # damaged files: tokenizers raises bare Exceptions, torch an UnpicklingError ...
        raise loading_error(cfg.name_or_path, part, err) from err
    if local:
        check_tokenizer_files(cfg.name_or_path, list(tokenizer.vocab_files_names.values()))
    if not getattr(tokenizer, "is_fast", False):
        log.warning("%s has no fast tokenizer: encoding will be slow", cfg.name_or_path)
    return tokenizer, model
