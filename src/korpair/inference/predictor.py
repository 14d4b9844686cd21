"""Batch inference from a saved model folder (korpair's or any HF sequence classifier).

Example::

    predictor = Predictor.from_pretrained("runs/sample/model")
    [p] = predictor.predict([("비가 온다", "날씨가 맑다")])
    p.label, round(p.scores["contradiction"], 2)  # ('contradiction', 0.91)
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from korpair.errors import ModelFolderError
from korpair.features import PairCollator, encode_pairs
from korpair.model_folder import trained_max_length
from korpair.types import Pair, Prediction

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
PairLike = Pair | tuple[str, str] | Sequence[str]


# "32": exact fp32 scores; "bf16": autocast, about 2x faster where the hardware computes in bf16
PRECISIONS = ("32", "32-true", "bf16", "bf16-mixed", "16", "16-mixed")


class Predictor:
    """A loaded classifier and its tokenizer; ``predict`` takes pairs, returns ``Prediction``s."""

    def __init__(self, model, tokenizer, *, max_seq_length: int = 128, device: str | None = None,
                 precision: str = "32") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.precision = precision
        id2label = model.config.id2label
        self.labels = tuple(id2label[i] for i in range(model.config.num_labels))
        # multiples of 8 suit a GPU's tensor cores; on a CPU they are only padding
        self._collate = PairCollator(tokenizer.pad_token_id or 0,
                                     pad_to_multiple_of=8 if self.device.type == "cuda" else None)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | None = None,
                        max_seq_length: int | None = None, precision: str = "32",
                        trust_remote_code: bool = False) -> Predictor:
        """Load a model folder (or hub name). ``max_seq_length`` defaults to the training run's."""
        path = Path(name_or_path)
        if not path.exists() and not HUB_ID.fullmatch(str(name_or_path)):
            raise ModelFolderError(f"{path}: no such model folder (nor a hub name like 'org/model')")
        if path.exists() and not (path / "config.json").is_file():
            hint = f"; did you mean {path / 'model'}?" if (path / "model" / "config.json").is_file() else ""
            raise ModelFolderError(f"{path}: not a model folder (no config.json){hint}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(name_or_path), trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise ModelFolderError(f"cannot load model {str(name_or_path)!r}: {err}") from None
        if max_seq_length is None:
            max_seq_length = trained_max_length(path) or 128
        return cls(model, tokenizer, max_seq_length=max_seq_length, device=device, precision=precision)

    def predict(self, pairs: Iterable[PairLike], batch_size: int = 64) -> list[Prediction]:
        """Classify pairs; results come back in input order.

        Pairs are sorted by length internally so each batch pads little.
        """
        pairs = [_as_pair(p, i) for i, p in enumerate(pairs)]
        if not pairs:
            return []
        probs = self.predict_proba(pairs, batch_size)
        return [
            Prediction(self.labels[int(row.argmax())], {n: float(v) for n, v in zip(self.labels, row)})
            for row in probs
        ]

    def predict_proba(self, pairs: Sequence[Pair], batch_size: int = 64) -> np.ndarray:
        """Probabilities, shape ``(len(pairs), num_labels)``, in input order."""
        feats = encode_pairs(self.tokenizer, pairs, None, self.max_seq_length)
        order = np.argsort(-feats.lengths, kind="stable")
        out = np.empty((len(pairs), len(self.labels)), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = self._collate([feats[i] for i in idx])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits = self.model(**batch).logits
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def predict_stream(self, pairs: Iterable[Pair], batch_size: int = 64,
                       chunk_size: int = 4096) -> Iterator[tuple[Pair, Prediction]]:
        """Classify an iterable of any length chunk by chunk (constant memory)."""
        chunk: list[Pair] = []
        for pair in pairs:
            chunk.append(pair)
            if len(chunk) == chunk_size:
                yield from zip(chunk, self.predict(chunk, batch_size))
                chunk = []
        if chunk:
            yield from zip(chunk, self.predict(chunk, batch_size))

    def _autocast(self):
        if self.precision in ("bf16", "bf16-mixed"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.precision in ("16", "16-mixed"):
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()


def _as_pair(p: PairLike, i: int) -> Pair:
    if isinstance(p, Pair):
        pair = p
    elif isinstance(p, dict):
        pair = Pair(p.get("premise", p.get("text")), p.get("hypothesis", p.get("text_pair")))
    else:
        try:
            a, b = p
        except (TypeError, ValueError):
            raise ValueError(f"pair {i}: expected (premise, hypothesis), got {p!r}") from None
        pair = Pair(a, b)
    if not isinstance(pair.premise, str) or not isinstance(pair.hypothesis, str):
        raise ValueError(f"pair {i}: both texts must be strings")
    return pair
