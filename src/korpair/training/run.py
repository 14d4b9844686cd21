"""``fit``: one training run, read top to bottom.

corpus -> tokenizer and model -> cached features -> Lightning Trainer -> best
checkpoint -> a plain Hugging Face folder in ``OUTPUT_DIR/model`` (safetensors
weights, tokenizer, labels in config.json), with metrics, config and plots.

Example::

    result = fit(TrainConfig.from_file("configs/sample.yaml"))
    result.metrics["val_accuracy"]  # 0.87
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import (
    ModelCheckpoint,
)
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from transformers import AutoTokenizer

from korpair.atomic import write_dir, write_text
from korpair.config import RUN_CONFIG_NAME, TrainConfig
from korpair.corpora import load_splits
from korpair.errors import ModelFolderError, OutputExistsError, TrainingInterrupted
from korpair.features import PairDataModule, encode_pairs_cached
from korpair.training.curves import plot_training_curves
from korpair.training.export import export_model
from korpair.training.model import build_model_and_tokenizer
from korpair.training.resume import (
    INTERRUPTED,
    LAST,
    find_resume_checkpoint,
    load_checkpoint_file,
    signal_handlers_kept,
)
from korpair.training.task import PairClassificationTask
from korpair.training.trainer import build_trainer

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced: the model folder and the best model's validation metrics."""

    output_dir: Path
    model_dir: Path
    metrics: dict

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items() if isinstance(v, float))
        return f"model saved to {self.model_dir} ({shown})"


def fit(cfg: TrainConfig, *, overwrite: bool = False, resume: bool = False,
        callbacks: Sequence[L.Callback] = ()) -> TrainResult:
    """Train, keep the best checkpoint by ``cfg.trainer.monitor``, export it as an HF folder.

    With ``resume``, continue the run in ``cfg.trainer.output_dir`` from its
    interruption (or last) checkpoint; a fresh run refuses a non-empty folder
    unless ``overwrite``. ``callbacks`` are Lightning callbacks added to the
    run's Trainer (after korpair's own): to time, log or stop a run from
    outside, as the benchmarks and tests do.
    """
    out = Path(cfg.trainer.output_dir)
    ckpt_path = None
    if resume:
        ckpt_path = find_resume_checkpoint(out)
        if ckpt_path is None:
            raise OutputExistsError(f"{out}: no checkpoint to resume from (checkpoints/{INTERRUPTED} "
                                    f"or checkpoints/{LAST}); start a new run with overwrite=True")
        _keep_old_logs(out)
    elif trainer_is_rank_zero():  # other DDP ranks start later, into rank 0's folder
        prepare_output_dir(out, overwrite)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    started = time.perf_counter()

    # train: every row checked in a first pass, then streamed into the cache, never held in memory
    splits = load_splits(cfg.corpus, stream_train=True)
    log.info("corpus %s: %d train / %d validation pairs, labels %s", cfg.corpus.name,
             len(splits.train), len(splits.validation), list(splits.labels.names))
    texts = (t for p in splits.train for t in (p.premise, p.hypothesis))
    tokenizer, model = build_model_and_tokenizer(cfg.model, splits.labels, texts, cfg.data.max_seq_length)
    if resume and cfg.model.from_scratch and (out / "tokenizer").is_dir():
        tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")  # the run's own vocabulary
    elif cfg.model.from_scratch and trainer_is_rank_zero():
        write_dir(out / "tokenizer", tokenizer.save_pretrained)
    encode = lambda pairs, key=None: encode_pairs_cached(  # noqa: E731
        tokenizer, pairs, splits.labels, cfg.data.max_seq_length, cfg.data.cache_dir, source_key=key)
    data = PairDataModule(encode(splits.train, splits.train.key), encode(splits.validation), cfg.data,
                          pad_id=tokenizer.pad_token_id or 0, seed=cfg.trainer.seed)

    task = PairClassificationTask(model, splits.labels, cfg.optim)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor=cfg.trainer.monitor,
        mode="min" if cfg.trainer.monitor == "val_loss" else "max", save_top_k=1, save_last=True,
    )
    trainer = build_trainer(cfg, out, checkpoint, callbacks)
    if trainer.is_global_zero:
        write_text(out / RUN_CONFIG_NAME, cfg.to_yaml())
        log.info("effective batch size %d (%d per device x %d devices x %d accumulation), peak lr %g",
                 effective_batch_size(cfg, trainer), cfg.data.batch_size, trainer.world_size,
                 cfg.trainer.accumulate_grad_batches, cfg.optim.lr)
    # weights_only: a checkpoint can carry no code; korpair's own state is tensors and plain types
    try:
        with signal_handlers_kept(), warnings.catch_warnings():
            # Lightning warns on a mid-epoch resume unless the DataLoader itself is stateful; here the
            # data module carries the position (PairDataModule.state_dict) and replays the epoch exactly.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
            trainer.fit(task, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        # Lightning's own SIGTERM exit (status 0), which it takes before our handler is back on top
        # (the sanity-check validation): nothing was trained yet
        raise TrainingInterrupted(out, trainer.global_step, resumable=False) from None
    except pickle.UnpicklingError as err:
        raise ModelFolderError(
            f"{ckpt_path}: refused: the checkpoint holds objects other than tensors and plain values, "
            f"which could run code when loaded (weights_only). Details: {str(err).splitlines()[0]}"
        ) from None
    (out / "checkpoints" / INTERRUPTED).unlink(missing_ok=True)

    # Reload the best weights; weights_only refuses pickled code in the checkpoint.
    if checkpoint.best_model_path:
        state = load_checkpoint_file(Path(checkpoint.best_model_path),
                                     hint="the best weights are lost: train again with overwrite=True")
        task.load_state_dict(state["state_dict"])
    [best] = trainer.validate(task, datamodule=data, verbose=False)
    metrics = {
        **{k: float(v) for k, v in best.items()},
        "best_checkpoint": Path(checkpoint.best_model_path).name if checkpoint.best_model_path else None,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "train_pairs": len(splits.train),
        "validation_pairs": len(splits.validation),
        "dropped_rows": dict(splits.dropped),
        "effective_batch_size": effective_batch_size(cfg, trainer),
        "peak_lr": cfg.optim.lr,
        "world_size": trainer.world_size,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    model_dir = out / "model"
    if trainer.is_global_zero:
        export_model(task.model, tokenizer, model_dir, cfg, metrics=metrics, precision=trainer.precision)
        write_text(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        csvs = sorted(Path(trainer.loggers[0].log_dir).glob("metrics*.csv"))
        if csvs:
            plot_training_curves(csvs, out / "training_curves.png")
    return TrainResult(out, model_dir, metrics)


def _keep_old_logs(out: Path) -> None:
    """Lightning's CSV logger starts its file afresh: keep the part before a resume beside it."""
    csv_path = out / "logs" / "metrics.csv"
    if csv_path.exists() and trainer_is_rank_zero():
        n = len(list(csv_path.parent.glob("metrics-part*.csv")))
        csv_path.rename(csv_path.with_name(f"metrics-part{n + 1}.csv"))


def trainer_is_rank_zero() -> bool:
    """True in the process that owns the outputs (Lightning reads the rank from the environment)."""
    return rank_zero_only.rank == 0


def effective_batch_size(cfg: TrainConfig, trainer: L.Trainer) -> int:
    return cfg.data.batch_size * cfg.trainer.accumulate_grad_batches * trainer.world_size


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder unless told to replace the old one.

    With ``overwrite`` the old run is cleared except its ``model/``, which the
    new run swaps atomically when it finishes: a failed new run loses nothing.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"{out}: output folder is not empty; pass overwrite=True to replace it, "
                f"resume='{out}' to continue it, or choose another trainer.output_dir"
            )
        for child in out.iterdir():
            if child.name != "model":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
