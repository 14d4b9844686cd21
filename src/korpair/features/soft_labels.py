"""Soft targets: the annotators' vote distribution of each training pair, for ``corpus.soft_labels``.

A pair without votes gets its gold label as a one-hot distribution, so a
corpus whose votes all agree trains exactly as with hard labels (the loss is
cross-entropy against the distribution, ``torch.nn.functional.cross_entropy``
with probabilities as the target).

Example::

    targets = soft_targets(splits.train, label_map)         # (pairs, labels), rows sum to 1
    data = PairDataModule(WithSoftTargets(train_feats, targets), validation_feats, cfg.data, pad_id=0)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from torch.utils.data import Dataset

from korpair.corpora.votes import vote_distribution
from korpair.types import LabelMap, Pair


def soft_targets(pairs: Iterable[Pair], labels: LabelMap) -> tuple[np.ndarray, int, int]:
    """The target distribution of every pair (in order), how many pairs had votes, and how many of those split."""
    rows, with_votes, split = [], 0, 0
    for pair in pairs:
        if pair.votes:
            with_votes += 1
            split += len(set(pair.votes)) > 1
            rows.append(vote_distribution(pair.votes, labels.names))
        else:
            rows.append([float(name == pair.label) for name in labels.names])
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(labels.names)), with_votes, split


class WithSoftTargets(Dataset):
    """Encoded pairs whose items also carry ``soft_labels`` (one row of ``targets``)."""

    def __init__(self, feats, targets: np.ndarray) -> None:
        if len(feats) != len(targets):
            raise ValueError(f"{len(targets)} soft targets for {len(feats)} pairs")
        self.feats, self.targets = feats, targets

    def __len__(self) -> int:
        return len(self.feats)

    @property
    def lengths(self) -> np.ndarray:
        return self.feats.lengths

    def __getitem__(self, i: int) -> dict:
        return {**self.feats[i], "soft_labels": self.targets[i]}
