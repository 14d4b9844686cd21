"""Batch inference from a saved model folder: PyTorch, exported ONNX or int8 ONNX, or a hub name.

``Predictor.from_pretrained`` opens any of them; the runtime under it
(``korpair.inference.runtimes``) is a part it holds, so every folder answers
through the same ``predict``, ``predict_proba`` and ``predict_stream``.

Example::

    predictor = Predictor.from_pretrained("runs/sample/model")       # or runs/sample/model/onnx-int8
    [p] = predictor.predict([("비가 온다", "날씨가 맑다")])
    p.label, round(p.scores["contradiction"], 2)  # ('contradiction', 0.91)

    sts = Predictor.from_pretrained("runs/korsts/model")             # a regression (similarity) model
    sts.task, sts.predict([("비가 온다", "비가 내린다")])[0].score      # ('regression', 4.31)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from korpair.atomic import recover_dir
from korpair.calibration import softmax
from korpair.errors import ConfigError, ModelFolderError, loading_error
from korpair.features import PairCollator, encode_pairs
from korpair.hardware import check_inference_precision, pad_multiple
from korpair.inference.backends import BACKENDS, resolve_backend
from korpair.inference.packing import packed_calls
from korpair.inference.runtimes import ONNX_MODEL_FILE, OPENVINO_MODEL_FILE, Runtime, load_runtime
from korpair.model_folder import (
    REGRESSION_TASK,
    SECTION,
    TASK,
    calibration_problem,
    check_tokenizer_files,
    model_task,
    score_range,
    trained_max_length,
)
from korpair.types import Pair, Prediction, ScoreRange

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
PairLike = Pair | tuple[str, str] | Sequence[str]


class Predictor:
    """A loaded model and its tokenizer; ``predict`` takes pairs, returns ``Prediction``s.

    ``runtime`` runs the model (``TorchRuntime`` or ``OnnxRuntime``); ``labels``
    are the class names in logit order. ``task`` is ``"classification"`` (a
    label and the probability of each) or ``"regression"`` (one score per pair,
    ``Prediction.score``; ``score_range`` is the range it was trained on).
    ``calibration`` is what training fitted on the validation split (a
    temperature, or an affine map of a score; ``korpair.calibration``):
    applied to every answer while ``calibrated`` is true.
    """

    def __init__(self, runtime: Runtime, tokenizer, labels: Sequence[str], *, max_seq_length: int = 128,
                 task: str = "classification", score_range: ScoreRange | None = None,
                 calibration: dict | None = None, calibrated: bool = True) -> None:
        self.runtime = runtime
        self.calibration = calibration
        self.calibrated = calibrated
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.max_seq_length = max_seq_length
        self.task = task
        self.score_range = score_range if score_range is not None else ScoreRange()
        self.backend = "torch" if runtime.name == "PyTorch" else runtime.name  # what from_pretrained chose
        self._collate = PairCollator(tokenizer.pad_token_id or 0, pad_multiple("auto", runtime.device.type))

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.runtime.device

    @property
    def precision(self) -> str:
        """The inference precision (``korpair.types.INFERENCE_PRECISIONS``); an ONNX model's is ``"32"``."""
        return self.runtime.precision

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | None = None,
                        max_seq_length: int | None = None, precision: str = "32", backend: str = "auto",
                        trust_remote_code: bool = False, calibrated: bool = True) -> Predictor:
        """Load a model folder: PyTorch, or ONNX as ``export_onnx`` writes it (fp32 or int8), or a hub name.

        ``max_seq_length`` defaults to the training run's. ``device`` defaults to
        a GPU where there is one. ``precision="bf16"`` (or ``"16"``) runs a
        PyTorch model under autocast: about 2x the pairs/s on recent GPUs and on
        most CPUs with AVX512-BF16 or AMX (not all: time it), with scores within about 1e-2 of
        fp32; an ONNX model runs as it was exported, in ``"32"`` only. A folder
        korpair cannot use (damaged weights or tokenizer, labels that do not fit
        the weights, a bad ``korpair`` section) is refused with a
        ``ModelFolderError`` that names the file. ``calibrated=False`` gives the
        model's raw probabilities (or scores), without the calibration training
        fitted and stored in the folder. ``backend`` picks the runtime among those
        exported into the folder (``korpair.inference.backends``): ``"auto"`` is
        the fastest one ``export_backends`` recorded there (PyTorch where there
        is no record, or where ``precision`` is set), a name such as
        ``"onnx-int8"`` that one.
        """
        check_inference_precision(precision)
        path = Path(name_or_path)
        recover_dir(path)  # a model swap that a killed process left half-done
        chosen = "torch"
        if backend == "auto" and (device not in (None, "cpu") or (device is None and torch.cuda.is_available())):
            backend = "torch"  # the record times CPU backends; on a GPU the model runs on PyTorch
        if path.is_dir() and (path / "config.json").is_file():
            path, precision, chosen = resolve_backend(path, backend, precision)
            name_or_path = path
        elif backend not in ("auto", "torch"):
            raise ConfigError(f"backend {backend!r}: {name_or_path} is not a local model folder, so only "
                              "backend='torch' (or 'auto') applies")
        if not path.exists() and not HUB_ID.fullmatch(str(name_or_path)):
            raise ModelFolderError(f"{path}: no such model folder (nor a hub name like 'org/model')")
        if path.exists() and not (path / "config.json").is_file():
            hint = ""
            if (path / "model" / "config.json").is_file():
                hint = f"; did you mean {path / 'model'}?"
            elif (path / ONNX_MODEL_FILE).is_file() or (path / OPENVINO_MODEL_FILE).is_file():
                hint = "; an exported folder needs the config.json and tokenizer that the export writes beside it"
            raise ModelFolderError(f"{path}: not a model folder (no config.json){hint}")
        runtime = load_runtime(name_or_path, device=device, precision=precision,
                               trust_remote_code=trust_remote_code)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
        except Exception as err:  # tokenizers raises bare Exceptions for a damaged tokenizer.json
            raise loading_error(name_or_path, "tokenizer", err) from err
        if path.is_dir():
            check_tokenizer_files(path, list(tokenizer.vocab_files_names.values()))
        config = runtime.config
        labels = [config.id2label[i] for i in range(config.num_labels)]
        if max_seq_length is None:
            max_seq_length = trained_max_length(path) or 128
        task = model_task(path, config.to_dict())
        section = config.to_dict().get(SECTION)
        calibration = section.get("calibration") if isinstance(section, dict) else None
        problem = calibration_problem(calibration, REGRESSION_TASK if task == "regression" else TASK)
        if problem is not None:  # a hub model's config.json is not checked as a local folder is
            raise ModelFolderError(f"{name_or_path}: config.json: {SECTION}.calibration: {problem}")
        predictor = cls(runtime, tokenizer, labels, max_seq_length=max_seq_length, task=task,
                        score_range=score_range(path), calibration=calibration, calibrated=calibrated)
        if chosen == "torch" and runtime.name != "PyTorch":  # an exported folder, loaded by its own path
            chosen = path.name if path.name in BACKENDS else runtime.name
        predictor.backend = chosen if chosen != "torch" or precision == "32" else f"torch-{precision}"
        outputs = "a score" if task == "regression" else "labels: " + ", ".join(predictor.labels)
        if calibration is not None and calibrated:
            outputs += ", calibrated"
        log.info("loaded %s on %s (backend %s), %s, precision %s (%s)", name_or_path, runtime.name, chosen,
                 predictor.device, predictor.precision, outputs)
        return predictor

    def predict(self, pairs: Iterable[PairLike], batch_size: int = 64,
                max_tokens: int | None = None) -> list[Prediction]:
        """Classify (or score) pairs; results come back in input order.

        Pairs are sorted by length internally so each batch pads little
        (``max_tokens``: see ``predict_logits``).
        """
        if self.task == "regression":
            return [Prediction(None, {}, score=float(v))
                    for v in self.predict_scores(list(pairs), batch_size, max_tokens)]
        probs = self.predict_proba(list(pairs), batch_size, max_tokens)
        return [
            Prediction(self.labels[int(row.argmax())], {n: float(v) for n, v in zip(self.labels, row)})
            for row in probs
        ]

    @property
    def temperature(self) -> float:
        """The temperature probabilities are computed at: the fitted one while ``calibrated``, else 1."""
        if self.calibrated and self.calibration is not None and self.task != "regression":
            return float(self.calibration["temperature"])
        return 1.0

    def predict_proba(self, pairs: Sequence[PairLike], batch_size: int = 64,
                      max_tokens: int | None = None) -> np.ndarray:
        """Probabilities, shape ``(len(pairs), num_labels)``, in input order (a classifier's), calibrated
        while ``calibrated``."""
        if self.task == "regression":
            raise ValueError("a regression model gives one score per pair, not probabilities: use predict_scores")
        return self.probabilities(self.predict_logits(pairs, batch_size, max_tokens))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """``predict_logits``' output as this predictor's probabilities (at its ``temperature``)."""
        return softmax(logits, self.temperature).astype(np.float32)

    def predict_scores(self, pairs: Sequence[PairLike], batch_size: int = 64,
                       max_tokens: int | None = None) -> np.ndarray:
        """A regression model's scores, shape ``(len(pairs),)``, in input order, not clipped: its output, mapped
        by the fitted calibration while ``calibrated``."""
        if self.task != "regression":
            raise ValueError("a classifier gives probabilities: use predict_proba")
        scores = self.predict_logits(pairs, batch_size, max_tokens)[:, 0]
        if self.calibrated and self.calibration is not None:
            scores = (self.calibration["scale"] * scores.astype(np.float64) + self.calibration["shift"])
        return scores.astype(np.float32)

    def predict_logits(self, pairs: Sequence[PairLike], batch_size: int = 64,
                       max_tokens: int | None = None) -> np.ndarray:
        """The model's raw outputs, shape ``(len(pairs), num_labels)``, in input order (no calibration).

        Pairs run longest first, ``batch_size`` at a time; ``max_tokens`` also
        caps each batch's padded size (pairs x its longest pair's tokens), so a
        batch of short pairs is not padded to a long one's length: what the
        server asks for, whose batches mix whatever requests came in together.
        Where the runtime takes packed rows (a BERT classifier on PyTorch's CPU
        or exported to OpenVINO), pairs run several to a row with no padding
        (``korpair.inference.packing``); ``batch_size`` and ``max_tokens`` then
        cap each call's pairs and tokens.
        """
        pairs = [_as_pair(p, i) for i, p in enumerate(pairs)]
        out = np.empty((len(pairs), len(self.labels)), dtype=np.float32)
        if not pairs:
            return out
        feats = encode_pairs(self.tokenizer, pairs, None, self.max_seq_length)
        if getattr(self.runtime, "packed", False):  # several pairs a row, no padding (korpair.inference.packing)
            for idx, inputs in packed_calls(feats, batch_size, max_tokens):
                out[idx] = self.runtime.packed_logits(inputs)
            return out
        for idx in length_groups(feats.lengths, batch_size, max_tokens):
            out[idx] = self.runtime.logits(self._collate([feats[i] for i in idx]))
        return out

    def predict_stream(self, pairs: Iterable[PairLike], batch_size: int = 64,
                       chunk_size: int = 4096) -> Iterator[tuple[Pair, Prediction]]:
        """Classify an iterable of any length chunk by chunk (constant memory)."""
        chunk: list[Pair] = []
        for i, pair in enumerate(pairs):
            chunk.append(_as_pair(pair, i))
            if len(chunk) == chunk_size:
                yield from zip(chunk, self.predict(chunk, batch_size))
                chunk = []
        if chunk:
            yield from zip(chunk, self.predict(chunk, batch_size))

    def __repr__(self) -> str:
        outputs = "task='regression'" if self.task == "regression" else f"labels={self.labels}"
        return (f"Predictor(runtime={self.runtime.name!r}, device={str(self.device)!r}, "
                f"precision={self.precision!r}, {outputs})")


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


# A batch is padded to its longest pair, so a pair this much shorter than the longest starts a batch of its own
# (once the batch has MIN_GROUP pairs: a call has a cost of its own too). A server's batch mixes the lengths of
# whatever requests came together; cut this way, a batch of 32 KLUE-NLI pairs ran 1.15-1.2x faster on a CPU.
LENGTH_SLACK = 0.25
MIN_GROUP = 8


def length_groups(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> Iterator[np.ndarray]:
    """Indices of ``lengths`` in batches, longest first, that pad little.

    A batch holds at most ``batch_size`` pairs and, with ``max_tokens``, at
    most that many padded tokens (pairs x its longest); a pair shorter than
    ``1 - LENGTH_SLACK`` of the batch's longest begins the next batch once
    the batch has ``MIN_GROUP`` pairs.

    >>> lengths = np.array([60] * 8 + [20] * 4 + [61])
    >>> [g.tolist() for g in length_groups(lengths, 32)]
    [[12, 0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11]]
    >>> [len(g) for g in length_groups(lengths, 32, max_tokens=300)]
    [4, 5, 4]
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = batch_size if max_tokens is None else min(batch_size, max(1, max_tokens // max(1, longest)))
        end = start + 1
        while end < min(len(order), start + size):
            if end - start >= MIN_GROUP and lengths[order[end]] < (1 - LENGTH_SLACK) * longest:
                break
            end += 1
        yield order[start:end]
        start = end
