"""The Lightning ``Trainer`` of a run: callbacks, loggers, precision.

Example::

    trainer = build_trainer(cfg, out, checkpoint)
    trainer.fit(task, datamodule=data)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

from korpair.config import LOWER_IS_BETTER, TrainConfig
from korpair.hardware import resolve_precision
from korpair.training.collapse import CollapseWatch
from korpair.training.resume import LAST, AtomicCheckpointIO, ResumeCallback
from korpair.training.trackers import build_loggers

log = logging.getLogger(__name__)


def build_trainer(cfg: TrainConfig, out: Path, checkpoint: ModelCheckpoint,
                  extra_callbacks: Sequence[L.Callback] = (), task: str = "classification",
                  resuming: bool = False) -> L.Trainer:
    """A Trainer for a run of ``cfg`` (of ``task``) writing into ``out``; ``extra_callbacks`` run after
    korpair's own. A ``resuming`` run reports to the tracker runs it started (``trackers``)."""
    t = cfg.trainer
    callbacks: list = [checkpoint, LearningRateMonitor(logging_interval="step"), ResumeCallback(out),
                       CollapseWatch(cfg)]
    if t.early_stopping_patience:
        monitor = cfg.monitor_for(task)
        callbacks.append(EarlyStopping(monitor=monitor, patience=t.early_stopping_patience, mode=_mode(monitor)))
    if t.progress_bar:
        callbacks.append(ProgressBar(refresh_rate=10))
    callbacks += list(extra_callbacks)
    loggers = build_loggers(cfg, out, resuming)
    precision, why = resolve_precision(t.precision, t.accelerator)
    if t.precision == "auto":
        log.info("precision auto: %s (%s)", precision, why)
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=precision, max_epochs=t.max_epochs, max_steps=t.max_steps,
        gradient_clip_val=t.gradient_clip_val or None, accumulate_grad_batches=t.accumulate_grad_batches,
        val_check_interval=t.val_check_interval, log_every_n_steps=t.log_every_n_steps,
        callbacks=callbacks, logger=loggers, enable_progress_bar=t.progress_bar,
        enable_model_summary=False, deterministic=t.deterministic, default_root_dir=out,
        # our batch sampler shards itself across ranks (no padded duplicates in validation)
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],  # every checkpoint written beside its final name, then renamed
    )


def build_checkpoints(cfg: TrainConfig, out: Path, task: str = "classification"
                      ) -> tuple[ModelCheckpoint, list[ModelCheckpoint]]:
    """The best checkpoint (by ``cfg.trainer.monitor``, for a run of ``task``) and the callbacks that save the
    resume point.

    Lightning's ``save_last`` writes ``last.ckpt`` only when the best one
    changes, so a run killed late went back to its last improvement. Here the
    resume point has callbacks of its own: at every validation whatever the
    metric did, and every ``trainer.checkpoint_every_n_steps`` steps if set.
    """
    folder = out / "checkpoints"
    # No version counter: each save replaces best.ckpt or last.ckpt itself, even in a run folder that
    # was moved (Lightning then forgets which file it wrote and would save best-v1.ckpt beside it).
    monitor = cfg.monitor_for(task)
    best = ModelCheckpoint(dirpath=folder, filename="best", monitor=monitor, mode=_mode(monitor), save_top_k=1,
                           enable_version_counter=False)
    # monitor=None: keep the newest
    last = dict(dirpath=folder, filename=LAST.removesuffix(".ckpt"), monitor=None, save_top_k=1,
                enable_version_counter=False)
    points = [ModelCheckpoint(**last)]
    if cfg.trainer.checkpoint_every_n_steps:
        points.append(ModelCheckpoint(**last, every_n_train_steps=cfg.trainer.checkpoint_every_n_steps))
    return best, points


def _mode(monitor: str) -> str:
    return "min" if monitor in LOWER_IS_BETTER else "max"


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without ``v_num``: the logger's version (here the tail of "tensorboard") means nothing."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
