"""A word when training has collapsed: after each validation, say so if the model gives one answer to all.

A model that predicts one class for nearly every validation pair (or, for
regression, nearly the same score) has learnt nothing about the pairs, yet the
run goes on and exits 0 with an accuracy that looks like a number. Learners
meet this most with a model trained from scratch on little data, or a learning
rate that is too high; the warning names what usually helps.

The callback reads the model's outputs through a forward hook during
validation, so the training task needs no change; under DDP the counts of all
ranks are summed before the check.

Example::

    trainer = lightning.Trainer(callbacks=[CollapseWatch(cfg)])
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from korpair.config import TrainConfig

log = logging.getLogger(__name__)

ONE_CLASS_SHARE = 0.9  # more than this share of the pairs given one label is a collapse
FLAT_SCORES = 0.1  # predicted scores whose spread is under this share of the gold scores' spread are flat


def collapse_message(counts: list[int], names: tuple[str, ...]) -> str | None:
    """What to say when one label takes more than ``ONE_CLASS_SHARE`` of the predictions; ``None`` otherwise.

    >>> collapse_message([97, 2, 1], ("entailment", "neutral", "contradiction"))[:45]
    "the model predicts 'entailment' for 97% of th"
    >>> collapse_message([40, 30, 30], ("a", "b", "c")) is None
    True
    """
    total = sum(counts)
    if not total:
        return None
    top = max(range(len(counts)), key=counts.__getitem__)
    if counts[top] <= ONE_CLASS_SHARE * total:
        return None
    return (f"the model predicts {names[top]!r} for {counts[top] / total:.0%} of the {total} validation pairs: "
            "it does not tell the pairs apart yet")


def flat_message(predicted_std: float, gold_std: float, total: int) -> str | None:
    """What to say when the predicted scores hardly vary next to the gold ones; ``None`` otherwise.

    >>> flat_message(0.01, 1.2, 100)[:40]
    'the model gives nearly the same score to'
    """
    if total < 2 or gold_std <= 0 or predicted_std >= FLAT_SCORES * gold_std:
        return None
    return (f"the model gives nearly the same score to all {total} validation pairs (spread {predicted_std:.3g} "
            f"against {gold_std:.3g} for the gold scores): it does not tell the pairs apart yet")


class CollapseWatch(L.Callback):
    """After each validation, warn when the model answers every pair alike.

    Not after the sanity check nor the run's first validation, where a model
    that will learn often still gives one answer; always on the best
    checkpoint's final validation.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self._seen = 0  # validations during fitting
        self._hook = None
        self._outputs: list[torch.Tensor] = []
        self._gold: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outputs, self._gold = [], []
        if trainer.sanity_checking:
            return
        if trainer.training or trainer.state.fn == "fit":
            self._seen += 1
            if self._seen == 1:
                return
        self._hook = pl_module.model.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self._outputs.append(output.logits.detach().float())

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._hook is not None and "labels" in batch:
            self._gold.append(batch["labels"].detach().float())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        if not self._outputs:
            return
        logits = torch.cat(self._outputs)
        if getattr(pl_module, "regression", False):
            message = self._flat(trainer, logits[:, 0], torch.cat(self._gold) if self._gold else None)
        else:
            counts = torch.bincount(logits.argmax(-1), minlength=logits.shape[-1]).float()
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
            message = collapse_message([int(c) for c in counts.tolist()], tuple(pl_module.labels.names))
        if message and trainer.is_global_zero:
            log.warning("step %d: %s. What usually helps: %s", trainer.global_step, message, self._advice())

    def _flat(self, trainer: L.Trainer, scores: torch.Tensor, gold: torch.Tensor | None) -> str | None:
        if gold is None or len(gold) != len(scores):
            return None
        # sums, sums of squares and counts add up across ranks; the spreads follow from them
        stats = torch.stack([scores.sum(), (scores ** 2).sum(), gold.sum(), (gold ** 2).sum(),
                             torch.tensor(float(len(scores)), device=scores.device)]).double()
        s, ss, g, gg, n = trainer.strategy.reduce(stats, reduce_op="sum").tolist()
        spread = lambda total, squares: max(squares / n - (total / n) ** 2, 0.0) ** 0.5  # noqa: E731
        return flat_message(spread(s, ss), spread(g, gg), int(n))

    def _advice(self) -> str:
        m, o = self.cfg.model, self.cfg.optim
        tips = []
        if m.from_scratch:
            tips.append("a pretrained model (model.name_or_path=klue/bert-base, or beomi/kcbert-base) instead "
                        "of one built from scratch")
        tips += ["more training data", f"another learning rate (optim.lr is {o.lr:g}; try a few times smaller"
                 + (" or larger" if o.lr < 1e-4 else "") + ")", "more epochs if the loss is still falling"]
        return "; ".join(tips)
