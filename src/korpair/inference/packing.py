"""Several pairs to a row: inference without padding, for BERT classifiers.

A batch padded to its longest pair spends most of its work on padding when
lengths vary: 32 KLUE-NLI pairs taken at random (as a server's batch is) are
57% tokens and 43% padding, 64 pairs of a length-sorted batch still 15%
padding. Packed, a row of up to ``ROW_TOKENS`` tokens holds as many whole
pairs as fit, each with its own positions (from 0) and token types, and an
attention mask that keeps every pair to itself; the classifier reads each
pair's ``[CLS]``. Every pair's logits are those of the padded batch (to float
rounding): only the padding is gone, and the last layer's work on tokens the
classifier never reads (all but ``[CLS]`` need only their keys and values).

``PackedClassifier`` is the graph (PyTorch, and what the OpenVINO export
converts); ``packed_calls`` lays encoded pairs out in rows, call by call.

Example::

    feats = encode_pairs(tokenizer, pairs, None, 64)
    for idx, inputs in packed_calls(feats, batch_size=64):
        logits[idx] = PackedClassifier(model)(*(torch.from_numpy(inputs[n]) for n in PACKED_INPUTS))
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# The graph's inputs, in order: [rows, tokens] int64 each, and cls_index [pairs] (row * tokens + first token).
PACKED_INPUTS = ("input_ids", "token_type_ids", "position_ids", "segment_ids", "cls_index")
# A row holds at most this many tokens (or the longest pair's, if longer). Attention grows with the row while the
# rest of the model does not: rows of 128 ran slower than rows of 64 on a CPU (BERT-base, KLUE-NLI pairs).
ROW_TOKENS = 64


def packable(model: torch.nn.Module) -> bool:
    """Whether ``PackedClassifier`` computes ``model``'s logits: a BERT sequence classifier with absolute positions
    and its pooler (what korpair trains, and the BERT models of the hub)."""
    config = getattr(model, "config", None)
    return (type(model).__name__ == "BertForSequenceClassification"
            and getattr(model.bert, "pooler", None) is not None
            and getattr(config, "position_embedding_type", "absolute") == "absolute")


class PackedClassifier(torch.nn.Module):
    """``model``'s logits for pairs packed in rows: ``forward(*PACKED_INPUTS)`` -> ``[pairs, labels]``.

    ``segment_ids`` numbers the pairs of a row from 1 (0 for the row's tail),
    and a token attends only to tokens of its own segment; positions restart
    at 0 with each pair. The tail's tokens attend to each other, never to a
    pair, and no pair to them, so no softmax runs over an empty set.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        if not packable(model):
            raise ValueError(f"{type(model).__name__}: packed inference runs BERT sequence classifiers only")
        self.model = model

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, position_ids: torch.Tensor,
                segment_ids: torch.Tensor, cls_index: torch.Tensor) -> torch.Tensor:
        bert = self.model.bert
        keep = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]  # [rows, 1, tokens, tokens]
        if self.model.config._attn_implementation == "eager":  # adds the mask to the scores; SDPA takes a boolean
            keep = torch.zeros(keep.shape, dtype=torch.float32, device=keep.device).masked_fill(
                ~keep, torch.finfo(torch.float32).min)
        hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
        *layers, last = bert.encoder.layer
        for layer in layers:
            hidden = layer(hidden, keep)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # a tuple before transformers 5
        first = _at_cls(last, hidden, segment_ids, cls_index)
        pooled = bert.pooler.activation(bert.pooler.dense(first))
        return self.model.classifier(self.model.dropout(pooled))


def _at_cls(layer: torch.nn.Module, hidden: torch.Tensor, segment_ids: torch.Tensor,
            cls_index: torch.Tensor) -> torch.Tensor:
    """A BERT layer's output at each pair's [CLS] only: ``[pairs, hidden]``.

    The classifier reads nothing else of the last layer, so its other tokens
    need only their keys and values; queries, the attention output and the
    feed-forward run on one token a pair. That is 10/12 of the last layer's
    matrix work skipped, about 7% of a 12-layer model's.
    """
    att = layer.attention.self
    rows, tokens, _ = hidden.shape
    heads, size = att.num_attention_heads, att.attention_head_size
    row = torch.div(cls_index, tokens, rounding_mode="floor")  # each pair's row
    first = hidden.flatten(0, 1).index_select(0, cls_index)
    query = att.query(first).view(-1, heads, size)
    keys = att.key(hidden).view(rows, tokens, heads, size).index_select(0, row)  # [pairs, tokens, heads, size]
    values = att.value(hidden).view(rows, tokens, heads, size).index_select(0, row)
    scores = torch.einsum("phd,pthd->pht", query, keys) * size ** -0.5
    own = segment_ids.index_select(0, row) == segment_ids.flatten().index_select(0, cls_index)[:, None]
    scores = scores.masked_fill(~own[:, None, :], torch.finfo(scores.dtype).min)
    context = torch.einsum("pht,pthd->phd", scores.softmax(-1), values).reshape(-1, heads * size)
    return layer.feed_forward_chunk(layer.attention.output(context, first))


def pack_rows(lengths: np.ndarray, row_tokens: int = ROW_TOKENS, max_pairs: int | None = None) -> list[list[int]]:
    """Indices of ``lengths`` in rows of at most ``max(row_tokens, longest)`` tokens and ``max_pairs`` pairs,
    longest pair first, each pair in the row with the least room that fits it (best fit decreasing).

    >>> pack_rows(np.array([50, 30, 70, 20, 40]), row_tokens=100)
    [[2, 1], [0, 4], [3]]
    >>> pack_rows(np.array([50, 30, 70, 20, 40]), row_tokens=100, max_pairs=1)
    [[2], [0], [4], [1], [3]]
    """
    lengths = np.asarray(lengths)
    cap = max(row_tokens, int(lengths.max(initial=0)))
    rows: list[list[int]] = []
    by_room: dict[int, list[int]] = {}  # room left -> rows with that much room and room for another pair
    for i in np.argsort(-lengths, kind="stable").tolist():
        need = int(lengths[i])
        room = next((r for r in range(need, cap + 1) if by_room.get(r)), None)
        if room is None:
            rows.append([])
            row, room = len(rows) - 1, cap
        else:
            row = by_room[room].pop()
        rows[row].append(i)
        if max_pairs is None or len(rows[row]) < max_pairs:
            by_room.setdefault(room - need, []).append(row)
    return rows


def packed_calls(feats, batch_size: int, max_tokens: int | None = None,
                 row_tokens: int = ROW_TOKENS) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(pair indices, inputs) per model call, for encoded pairs ``feats`` (``korpair.features.EncodedPairs``).

    A call holds whole rows, at most ``batch_size`` pairs and, with
    ``max_tokens``, at most that many tokens (rows x its fullest row); the
    logits it returns are for the pairs in the order of the indices.
    """
    lengths = feats.lengths
    rows = pack_rows(lengths, row_tokens, batch_size)
    start = 0
    while start < len(rows):
        end, pairs, fullest = start, 0, 0
        while end < len(rows):
            width = max(fullest, int(lengths[rows[end]].sum()))
            if end > start and (pairs + len(rows[end]) > batch_size
                                or (max_tokens is not None and (end - start + 1) * width > max_tokens)):
                break
            pairs, fullest, end = pairs + len(rows[end]), width, end + 1
        yield _inputs(feats, rows[start:end], fullest)
        start = end


def _inputs(feats, rows: list[list[int]], width: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    shape = (len(rows), width)
    arrays = {name: np.zeros(shape, dtype=np.int64) for name in PACKED_INPUTS[:4]}
    order, firsts = [], []
    for r, row in enumerate(rows):
        at = 0
        for segment, i in enumerate(row, start=1):
            item = feats[i]
            k = len(item["input_ids"])
            arrays["input_ids"][r, at:at + k] = item["input_ids"]
            if "token_type_ids" in item:
                arrays["token_type_ids"][r, at:at + k] = item["token_type_ids"]
            arrays["position_ids"][r, at:at + k] = np.arange(k)
            arrays["segment_ids"][r, at:at + k] = segment
            order.append(i)
            firsts.append(r * width + at)
            at += k
    arrays["cls_index"] = np.asarray(firsts, dtype=np.int64)
    return np.asarray(order, dtype=np.int64), arrays


def example_packed_inputs() -> tuple[torch.Tensor, ...]:
    """What a tracing exporter runs ``PackedClassifier`` on: 2 rows of 16 tokens, two pairs in the first, one and
    a tail in the second (no axis of size 1, which would be specialised)."""
    segments = torch.tensor([[1] * 8 + [2] * 8, [1] * 10 + [0] * 6])
    positions = torch.tensor([list(range(8)) * 2, list(range(10)) + [0] * 6])
    types = (positions >= 4).long()
    ids = torch.full((2, 16), 5, dtype=torch.long)
    return ids, types, positions, segments, torch.tensor([0, 8, 16])


def split_rows(inputs: dict[str, np.ndarray], parts: int) -> list[dict[str, np.ndarray]]:
    """``inputs`` of one call as up to ``parts`` calls of consecutive rows (to run side by side); their logits,
    concatenated, are the whole call's."""
    rows, width = inputs["input_ids"].shape
    bounds = np.linspace(0, rows, min(parts, rows) + 1).astype(int)
    row_of = inputs["cls_index"] // width
    out = []
    for a, b in zip(bounds, bounds[1:]):
        part = {name: inputs[name][a:b] for name in PACKED_INPUTS[:4]}
        part["cls_index"] = inputs["cls_index"][(row_of >= a) & (row_of < b)] - a * width
        out.append(part)
    return out
