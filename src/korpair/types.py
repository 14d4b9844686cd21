"""The words every stage shares: a pair, a label set, a prediction. No I/O, no torch.

>>> pair = Pair("비가 온다", "날씨가 맑다", "contradiction")
>>> LabelMap(NLI_LABELS).id(pair.label)
2
"""

from __future__ import annotations

from dataclasses import dataclass

from korpair.errors import CorpusError

NLI_LABELS = ("entailment", "neutral", "contradiction")
# The precision names korpair accepts; korpair.hardware says what each means on the hardware at hand.
TRAIN_PRECISIONS = ("auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
INFERENCE_PRECISIONS = ("32", "bf16", "16")


@dataclass(frozen=True)
class Pair:
    """Two texts and, when known, the gold label name."""

    premise: str
    hypothesis: str
    label: str | None = None


@dataclass(frozen=True)
class LabelMap:
    """Label names in id order; id ``i`` is ``names[i]``.

    >>> LabelMap(("yes", "no")).id("no")
    1
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise CorpusError(f"a classifier needs at least 2 labels, got {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise CorpusError(f"label names must be unique, got {list(self.names)}")

    def id(self, name: str) -> int:
        return self.names.index(name)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Prediction:
    """The most likely label and the probability of every label.

    >>> Prediction("neutral", {"entailment": 0.2, "neutral": 0.7, "contradiction": 0.1}).to_dict()["label"]
    'neutral'
    """

    label: str
    scores: dict[str, float]

    def to_dict(self) -> dict:
        return {"label": self.label, "scores": self.scores}
