"""Correlation metrics of a regression run: Pearson and Spearman over the whole validation set.

torchmetrics' own correlations warn on every run (Spearman keeps all
predictions, which is the only way to rank them, and says so when built) and
return NaN with a warning when the predictions do not vary, as a fresh model's
do in the sanity-check validation. NaN would also stop early stopping at once
(its ``check_finite``). These compute in float64 as scipy does and call a
correlation with a constant side 0: a model that gives every pair the same
score ranks nothing.

Example::

    spearman = SpearmanCorrelation()
    spearman.update(predicted_scores, gold_scores)
    spearman.compute()  # tensor(0.87, dtype=torch.float64)
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class _Correlation(Metric):
    """Keeps every (prediction, gold) pair; DDP ranks' pairs are concatenated before ``compute``."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(preds.detach().reshape(-1).double())
        self.target.append(target.detach().reshape(-1).double())

    def _pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        # a list of batches on one process; one tensor once DDP ranks' states are gathered ("cat")
        if isinstance(self.preds, list) and not self.preds:
            empty = torch.zeros(0, dtype=torch.float64, device=self.device)
            return empty, empty
        return dim_zero_cat(self.preds), dim_zero_cat(self.target)


class PearsonCorrelation(_Correlation):
    """Pearson's r of predicted and gold scores (0 when either side is constant)."""

    def compute(self) -> torch.Tensor:
        return pearson(*self._pairs())


class SpearmanCorrelation(_Correlation):
    """Spearman's rho: Pearson's r of the ranks, ties sharing their average rank (as scipy's ``spearmanr``)."""

    def compute(self) -> torch.Tensor:
        preds, target = self._pairs()
        return pearson(average_ranks(preds), average_ranks(target))


def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson's r in float64; 0 for fewer than two pairs or a constant side.

    >>> float(pearson(torch.tensor([1., 2., 3.]), torch.tensor([2., 4., 7.])))  # doctest: +ELLIPSIS
    0.99339...
    >>> float(pearson(torch.tensor([1., 1., 1.]), torch.tensor([2., 4., 7.])))
    0.0
    """
    x, y = x.double(), y.double()
    if x.numel() < 2 or bool(x.min() == x.max()) or bool(y.min() == y.max()):
        return torch.zeros((), dtype=torch.float64, device=x.device)
    dx, dy = x - x.mean(), y - y.mean()
    scale = torch.sqrt((dx * dx).sum() * (dy * dy).sum())
    return ((dx * dy).sum() / scale).clamp(-1.0, 1.0)


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, tied values sharing the average of their ranks (scipy's ``rankdata``).

    >>> average_ranks(torch.tensor([10., 30., 20., 30.])).tolist()
    [1.0, 3.5, 2.0, 3.5]
    """
    order = torch.argsort(x, stable=True)
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0)
    mean_rank = (ends - counts + 1 + ends).double() / 2  # a run of ties holds ranks ends-counts+1 .. ends
    ranks = torch.empty(x.shape, dtype=torch.float64, device=x.device)
    ranks[order] = mean_rank[inverse]
    return ranks
