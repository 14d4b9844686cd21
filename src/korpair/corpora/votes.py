"""Annotators' votes: the label each annotator gave a pair, where a corpus keeps them (KLUE-NLI keeps five).

``vote_columns`` finds the columns (named in the config, or KLUE-NLI's
``author``, ``label2`` .. ``label5`` when a file has them all); ``read_votes``
reads one row's. Training on them (``corpus.soft_labels``) uses their
distribution as the target; evaluation reports accuracy by how far the
annotators agreed (``agreement``).

>>> agreement(("neutral", "neutral", "entailment", "neutral", "neutral"))
'4-1'
>>> vote_distribution(("neutral", "neutral", "entailment", "neutral", "neutral"), ("entailment", "neutral"))
[0.2, 0.8]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

KLUE_VOTE_COLUMNS = ("author", "label2", "label3", "label4", "label5")


def vote_columns(keys: Sequence[str], wanted: Sequence[str] | None) -> tuple[str, ...] | None:
    """The vote columns of a file with header ``keys``: ``wanted`` if given (each must be there: the caller
    reports those missing), else KLUE-NLI's when all are there, else none."""
    if wanted:
        return tuple(wanted)
    return KLUE_VOTE_COLUMNS if all(k in keys for k in KLUE_VOTE_COLUMNS) else None


def read_votes(rec: dict, columns: Sequence[str],
               allowed: set[str] | None) -> tuple[tuple[str, ...] | None, str | None]:
    """One row's votes (empty cells left out) and what is wrong with them, if anything."""
    missing = [c for c in columns if c not in rec]
    if missing:
        return None, f"missing vote column(s) {missing} (corpus.vote_columns)"
    votes = tuple(str(rec[c]).strip() for c in columns if rec[c] is not None and str(rec[c]).strip())
    if allowed is not None:
        unknown = sorted({v for v in votes if v not in allowed})
        if unknown:
            return None, f"unknown vote(s) {unknown} in {list(columns)}; expected labels {sorted(allowed)}"
    return votes or None, None


def agreement(votes: Sequence[str]) -> str:
    """How the votes split, largest group first: ``unanimous``, ``4-1``, ``3-2``, ``3-1-1`` ..."""
    counts = sorted(Counter(votes).values(), reverse=True)
    return "unanimous" if len(counts) == 1 else "-".join(map(str, counts))


def vote_distribution(votes: Sequence[str], names: Sequence[str]) -> list[float]:
    """The share of the votes each label (of ``names``, in id order) got."""
    counts = Counter(votes)
    return [counts[n] / len(votes) for n in names]
