"""The words every stage shares: a pair, its target (a label set or a score range), a prediction.

No I/O, no torch. A classification model picks one of a ``LabelMap``'s labels;
a regression model (similarity, e.g. KorSTS) gives one score in a ``ScoreRange``.

>>> pair = Pair("비가 온다", "날씨가 맑다", "contradiction")
>>> LabelMap(NLI_LABELS).encode(pair.label)
2
>>> ScoreRange(0, 5).encode("3.8")
3.8
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from korpair.errors import CorpusError

NLI_LABELS = ("entailment", "neutral", "contradiction")
# The precision names korpair accepts; korpair.hardware says what each means on the hardware at hand.
TRAIN_PRECISIONS = ("auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
INFERENCE_PRECISIONS = ("32", "bf16", "16")
# Ways to run a model folder (korpair.inference.backends); "auto" is the fastest one its export measured.
BACKEND_NAMES = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-int8")
# Where a run's curves, config and final metrics can go: Lightning's loggers of these names.
TRACKERS = ("csv", "tensorboard", "mlflow", "wandb")
# What a model predicts: one label of a set, or one number (a similarity score).
TASKS = ("classification", "regression")
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Pair:
    """Two texts and, when known, the gold label name."""

    premise: str
    hypothesis: str
    label: str | float | None = None  # a label name, or a score for a regression corpus
    votes: tuple[str, ...] | None = None  # each annotator's label, where the corpus keeps them (KLUE-NLI)
    # the row's other short text fields (KLUE's source, KorSTS's genre), for evaluation by slice; not part of
    # what a pair is
    fields: tuple[tuple[str, str], ...] = field(default=(), compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class LabelMap:
    """Label names in id order; id ``i`` is ``names[i]``.

    >>> LabelMap(("yes", "no")).id("no")
    1
    """

    names: tuple[str, ...]
    task = "classification"
    dtype = "int64"  # of the encoded targets

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise CorpusError(f"a classifier needs at least 2 labels, got {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise CorpusError(f"label names must be unique, got {list(self.names)}")

    def id(self, name: str) -> int:
        return self.names.index(name)

    def encode(self, label: str) -> int:
        """The training target of a gold label: its id."""
        return self.names.index(label)

    def describe(self) -> dict:
        """What fixes the encoded targets (part of a features cache key)."""
        return {"labels": list(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class ScoreRange:
    """The range of a regression corpus's gold scores, e.g. 0 to 5 for KorSTS and KLUE-STS.

    ``None`` bounds are open: a corpus of your own files may declare no range.

    >>> ScoreRange(0, 5).check(5.5)
    'score 5.5 is outside the range 0 to 5'
    """

    low: float | None = None
    high: float | None = None
    task = "regression"
    dtype = "float32"
    names = ("score",)  # the one output, as config.json's id2label names it

    def __post_init__(self) -> None:
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise CorpusError(f"a score range needs low < high, got {self.low} to {self.high}")

    def parse(self, text: str | float) -> float:
        """The score a gold label holds; a ``ValueError`` saying why when it holds none usable."""
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"label {text!r} is not a number (a regression corpus needs numeric scores)") from None
        problem = self.check(value)
        if problem:
            raise ValueError(problem)
        return value

    def check(self, value: float) -> str | None:
        """What is wrong with a score, or ``None``."""
        if not math.isfinite(value):
            return f"score {value} is not a finite number"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return f"score {value:g} is outside the range {_bound(self.low)} to {_bound(self.high)}"
        return None

    def encode(self, label: str | float) -> float:
        return self.parse(label)

    def describe(self) -> dict:
        return {"score_range": [self.low, self.high]}

    def __len__(self) -> int:
        return 1


def _bound(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


Target = LabelMap | ScoreRange


@dataclass(frozen=True)
class Prediction:
    """A classifier's most likely label and the probability of every label, or a regression model's score.

    >>> Prediction("neutral", {"entailment": 0.2, "neutral": 0.7, "contradiction": 0.1}).to_dict()["label"]
    'neutral'
    >>> Prediction(None, {}, score=4.2).to_dict()
    {'score': 4.2}
    """

    label: str | None
    scores: dict[str, float]
    score: float | None = None  # set for a regression model, whose label is None

    def to_dict(self) -> dict:
        if self.score is not None and self.label is None:
            return {"score": self.score}
        return {"label": self.label, "scores": self.scores}
