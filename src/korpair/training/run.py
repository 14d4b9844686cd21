"""``fit``: one training run, read top to bottom.

corpus -> tokenizer and model -> cached features -> Lightning Trainer -> best
checkpoint -> a plain Hugging Face folder in ``OUTPUT_DIR/model`` (safetensors
weights, tokenizer, labels in config.json), with metrics, config and plots.
The run holds ``OUTPUT_DIR`` from start to end (``run_folder``) and decides
from what it holds whether to start, continue or return a finished run
(``plan_run``); nothing in it changes until the data and config are checked.

Example::

    result = fit(TrainConfig.from_file("configs/sample.yaml"))
    result.metrics["val_accuracy"]  # 0.87
"""

from __future__ import annotations

import json
import logging
import pickle
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from transformers import AutoTokenizer

from korpair.atomic import write_dir, write_text
from korpair.config import RUN_CONFIG_NAME, TrainConfig
from korpair.corpora import load_splits
from korpair.errors import ConfigError, ModelFolderError, OutputExistsError, TrainingInterrupted, disk_full_as_error
from korpair.features import PairDataModule, encode_pairs_cached
from korpair.features.soft_labels import WithSoftTargets, soft_targets
from korpair.training.calibrate import describe_calibration, fit_calibration
from korpair.training.curves import plot_training_curves
from korpair.training.export import export_model
from korpair.training.model import build_model_and_tokenizer
from korpair.training.resume import (
    INTERRUPTED,
    find_resume_checkpoint,
    load_checkpoint_file,
    signal_handlers_kept,
)
from korpair.training.run_folder import PREVIOUS, RunFolder, config_differences, hold_run_folder
from korpair.training.task import PairClassificationTask
from korpair.training.trackers import abandon_trackers, finish_trackers, start_trackers
from korpair.training.trainer import build_checkpoints, build_trainer

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"  # written last: a run folder that holds it (and model/) is finished


@dataclass
class TrainResult:
    """What a run produced: the model folder and the best model's validation metrics."""

    output_dir: Path
    model_dir: Path
    metrics: dict

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items() if isinstance(v, float))
        return f"model saved to {self.model_dir} ({shown})"


def fit(cfg: TrainConfig, *, overwrite: bool = False, resume: bool | Literal["auto"] = False,
        callbacks: Sequence[L.Callback] = ()) -> TrainResult:
    """Train, keep the best checkpoint by ``cfg.trainer.monitor``, export it as an HF folder.

    The run holds its output folder ``cfg.trainer.output_dir`` (a second run
    into it is refused, naming the first). A fresh run refuses a non-empty
    folder unless ``overwrite``; the old run's files are replaced only once the
    data and config are checked and the new run has a checkpoint, and its
    ``model/`` only by the new one. ``resume=True`` continues the run in the
    folder with ``cfg`` from its newest checkpoint (from its first step if it
    has none); ``resume="auto"`` does so only if the folder holds a run of the
    same config, and starts fresh in an empty folder. A finished run of the
    same config is returned as it is, read from ``metrics.json``.
    ``callbacks`` are Lightning callbacks added to the run's Trainer (after
    korpair's own): to time, log or stop a run from outside, as the
    benchmarks and tests do.
    """
    owner = trainer_is_rank_zero()  # other DDP ranks start later, into rank 0's folder
    with hold_run_folder(cfg.trainer.output_dir, owner=owner) as folder:
        plan = plan_run(folder, cfg, overwrite=overwrite, resume=resume, owner=owner)
        return _train(cfg, folder, plan, callbacks)


def resume_run(run_dir: str | Path, overrides: Sequence[str] = (),
               callbacks: Sequence[L.Callback] = ()) -> TrainResult:
    """Continue the run in ``run_dir`` with its saved config and ``overrides`` (e.g. more epochs).

    From its newest checkpoint, or from its first step if it was killed
    before one; a finished run whose config the overrides leave as it was is
    returned as it is.
    """
    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG_NAME).is_file() and not (run_dir / PREVIOUS).is_dir():
        raise ConfigError(f"{run_dir}: not a korpair run folder (no {RUN_CONFIG_NAME}); nothing to resume")
    owner = trainer_is_rank_zero()
    with hold_run_folder(run_dir, owner=owner) as folder:
        saved = run_dir / RUN_CONFIG_NAME
        if not saved.is_file() and folder.killed_start() and owner:
            folder.roll_back()  # killed before it saved its config: the run it replaced is the one to continue
        if not saved.is_file():
            raise ConfigError(f"{run_dir}: not a korpair run folder (no {RUN_CONFIG_NAME}); nothing to resume")
        cfg = TrainConfig.from_file(saved, [*overrides, f"trainer.output_dir={run_dir}"])
        plan = plan_run(folder, cfg, overwrite=False, resume=True, owner=owner)
        return _train(cfg, folder, plan, callbacks)


@dataclass(frozen=True)
class RunPlan:
    """What a run does in its folder: return a finished run, continue from a checkpoint, or start at step 0."""

    checkpoint: Path | None = None
    finished: dict | None = None  # the metrics of a finished run of the same config
    restart: bool = False  # start again a run that was killed before its first checkpoint


def plan_run(folder: RunFolder, cfg: TrainConfig, *, overwrite: bool, resume: bool | str,
             owner: bool = True) -> RunPlan:
    """Decide, from what the folder holds, what a run of ``cfg`` does there.

    It changes nothing, but for a run killed before its first checkpoint that
    ``cfg`` does not continue: it is rolled back first. DDP ranks other than
    0 (not ``owner``) follow rank 0's plan.
    """
    out = folder.path
    if not owner:
        return _follow_rank_zero(folder, cfg, resume)
    if folder.killed_start():
        killed = out / RUN_CONFIG_NAME
        if resume and killed.is_file() and (resume is True or
                                             not config_differences(TrainConfig.from_file(killed), cfg)):
            log.warning("%s: the run was killed before its first checkpoint; starting it again", out)
            return RunPlan(restart=True)
        log.warning("%s: a run was killed here before its first checkpoint; putting back what it replaced", out)
        folder.roll_back()
    if not folder.entries():
        return RunPlan()
    if not resume:
        prepare_output_dir(out, overwrite)
        return RunPlan()
    saved = out / RUN_CONFIG_NAME
    if not saved.is_file():
        if overwrite:
            return RunPlan()
        raise OutputExistsError(f"{out}: output folder is not empty and holds no korpair run to continue (no "
                                f"{RUN_CONFIG_NAME}); pass overwrite=True to replace what it holds, or choose "
                                f"another trainer.output_dir")
    changed = config_differences(TrainConfig.from_file(saved), cfg)
    if resume == "auto" and changed:
        if overwrite:
            return RunPlan()
        raise OutputExistsError(
            f"{out}: holds a run of another config ({'; '.join(changed)}); to continue that run with these "
            f"settings pass resume='{out}' with them as overrides, to replace it pass overwrite=True, or choose "
            f"another trainer.output_dir")
    metrics = out / METRICS_NAME
    finished = metrics.is_file() and (out / "model").is_dir()
    if finished and not changed:
        return RunPlan(finished=json.loads(metrics.read_text(encoding="utf-8")))
    checkpoint = find_resume_checkpoint(out)
    if checkpoint is not None:
        return RunPlan(checkpoint=checkpoint)
    if finished:
        raise OutputExistsError(f"{out}: the run is finished and has no checkpoint left to continue it from with "
                                f"other settings ({'; '.join(changed)}); train it again with overwrite=True")
    return RunPlan()  # killed before its first checkpoint: the same run starts again


def _follow_rank_zero(folder: RunFolder, cfg: TrainConfig, resume: bool | str) -> RunPlan:
    """The plan of a DDP rank other than 0, which changes nothing and refuses nothing (rank 0 does).

    Under torchrun or SLURM it sees the folder as rank 0 found it; under
    Lightning's own launcher it starts inside rank 0's run, once rank 0 has
    prepared the folder: a run from step 0 has its predecessor set aside then
    and no checkpoint, a continued run its checkpoint, a finished one no ranks.
    """
    out, saved = folder.path, folder.path / RUN_CONFIG_NAME
    if not resume or folder.killed_start() or not saved.is_file():
        return RunPlan()
    changed = config_differences(TrainConfig.from_file(saved), cfg)
    if resume == "auto" and changed:
        return RunPlan()
    if not changed and (out / METRICS_NAME).is_file() and (out / "model").is_dir():
        return RunPlan(finished=json.loads((out / METRICS_NAME).read_text(encoding="utf-8")))
    return RunPlan(checkpoint=find_resume_checkpoint(out))


def _train(cfg: TrainConfig, folder: RunFolder, plan: RunPlan, callbacks: Sequence[L.Callback]) -> TrainResult:
    out = folder.path
    if plan.finished is not None:
        log.info("%s: the run is finished (model/ and %s); nothing to do", out, METRICS_NAME)
        return TrainResult(out, out / "model", plan.finished)
    owner = trainer_is_rank_zero()
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    started = time.perf_counter()

    # Everything is read and checked before the folder changes. train: every row checked in a first
    # pass, then streamed into the cache, never held in memory.
    splits = load_splits(cfg.corpus, stream_train=True)
    target = splits.target
    monitor = check_monitor(cfg, splits)
    shown = (f"labels {list(target.names)}" if splits.task == "classification" else
             f"scores from {target.low:g} to {target.high:g}")
    log.info("corpus %s: %d train / %d validation pairs, %s; best checkpoint by %s", cfg.corpus.name,
             len(splits.train), len(splits.validation), shown, monitor)
    texts = (t for p in splits.train for t in (p.premise, p.hypothesis))
    tokenizer, model = build_model_and_tokenizer(cfg.model, target, texts, cfg.data.max_seq_length)
    own_tokenizer = plan.checkpoint is not None and cfg.model.from_scratch and (out / "tokenizer").is_dir()
    if own_tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")  # the run's own vocabulary
    encode = lambda pairs, key=None: encode_pairs_cached(  # noqa: E731
        tokenizer, pairs, target, cfg.data.max_seq_length, cfg.data.cache_dir, source_key=key)
    train = encode(splits.train, splits.train.key)
    if cfg.corpus.soft_labels:
        train = WithSoftTargets(train, _soft_targets(cfg, splits))
    data = PairDataModule(train, encode(splits.validation), cfg.data, pad_id=tokenizer.pad_token_id or 0,
                          seed=cfg.trainer.seed)
    task = PairClassificationTask(model, target, cfg.optim)
    checkpoint, resume_points = build_checkpoints(cfg, out, splits.task)
    trainer = build_trainer(cfg, out, checkpoint, [*resume_points, *callbacks], task=splits.task,
                            resuming=plan.checkpoint is not None)

    try:
        if owner:
            _start_writing(folder, plan)
            with disk_full_as_error(out):
                if cfg.model.from_scratch and not own_tokenizer:
                    write_dir(out / "tokenizer", tokenizer.save_pretrained)
                write_text(out / RUN_CONFIG_NAME, cfg.to_yaml())
            start_trackers(trainer.loggers, cfg, out)
            log.info("effective batch size %d (%d per device x %d devices x %d accumulation), peak lr %g",
                     effective_batch_size(cfg, trainer), cfg.data.batch_size, trainer.world_size,
                     cfg.trainer.accumulate_grad_batches, cfg.optim.lr)
        result = _fit_and_export(cfg, trainer, task, data, tokenizer, checkpoint, plan.checkpoint, splits, started)
    except BaseException as err:
        if owner:
            abandon_trackers(trainer.loggers, interrupted=isinstance(err, (TrainingInterrupted, KeyboardInterrupt)))
            _settle_after_failure(folder)
        raise
    if owner:
        folder.drop_previous()
    return result


def _start_writing(folder: RunFolder, plan: RunPlan) -> None:
    """Make room for the run: a continued run moves its old logs and result aside, a new one the old run."""
    if plan.restart:
        folder.discard_killed_start()  # what it replaced stays aside until this run has a checkpoint
        return
    if plan.checkpoint is None:
        folder.set_aside()
        return
    # metrics.json says the run is finished: not while it trains on
    (folder.path / METRICS_NAME).unlink(missing_ok=True)
    # Lightning's CSV logger starts its file afresh: keep the part before a resume beside it
    csv_path = folder.path / "logs" / "metrics.csv"
    if csv_path.exists():
        n = len(list(csv_path.parent.glob("metrics-part*.csv")))
        csv_path.rename(csv_path.with_name(f"metrics-part{n + 1}.csv"))


def _settle_after_failure(folder: RunFolder) -> None:
    try:
        if folder.settle() == "rolled back":
            log.info("%s: the run failed before its first checkpoint; the folder holds what it held before",
                     folder.path)
    except OSError as err:  # the failure itself is what the user needs to see; the next run settles this
        log.warning("%s: could not put the folder back as it was (%s); the next run into it will", folder.path, err)


def _fit_and_export(cfg: TrainConfig, trainer: L.Trainer, task: PairClassificationTask, data: PairDataModule,
                    tokenizer, checkpoint: ModelCheckpoint, ckpt_path: Path | None, splits,
                    started: float) -> TrainResult:
    out = Path(cfg.trainer.output_dir)
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
    best_path = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    if best_path is not None:
        # Lightning keeps the path it wrote; a run folder moved since holds the file under its new path
        best_path = out / "checkpoints" / best_path.name
        state = load_checkpoint_file(best_path, hint="the best weights are lost: train again with overwrite=True")
        task.load_state_dict(state["state_dict"])
    loggers, trainer.loggers = trainer.loggers, []  # the best weights' score is no point of the training curves
    try:
        [best] = trainer.validate(task, datamodule=data, verbose=False)
    finally:
        trainer.loggers = loggers
    calibration = fit_calibration(task, data.val_dataloader()) if cfg.trainer.calibrate else None
    if calibration is not None:
        log.info("calibration on %d validation pairs: %s", calibration["pairs"], describe_calibration(calibration))
    metrics = {
        **{k: float(v) for k, v in best.items()},
        "best_checkpoint": best_path.name if best_path is not None else None,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "train_pairs": len(splits.train),
        "validation_pairs": len(splits.validation),
        "dropped_rows": dict(splits.dropped),
        "effective_batch_size": effective_batch_size(cfg, trainer),
        "peak_lr": cfg.optim.lr,
        "world_size": trainer.world_size,
        "train_seconds": round(time.perf_counter() - started, 2),
        **({"calibration": calibration} if calibration is not None else {}),
    }
    model_dir = out / "model"
    if trainer.is_global_zero:
        export_model(task.model, tokenizer, model_dir, cfg, metrics=metrics, precision=trainer.precision,
                     target=splits.target, calibration=calibration)
        with disk_full_as_error(out):
            csvs = sorted(Path(trainer.loggers[0].log_dir).glob("metrics*.csv"))
            if csvs:
                plot_training_curves(csvs, out / "training_curves.png", monitor=cfg.monitor_for(splits.task))
            # written last: its presence says the run is finished
            write_text(out / METRICS_NAME, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        finish_trackers(trainer.loggers, metrics, model_dir, trainer.global_step)
    return TrainResult(out, model_dir, metrics)


def _soft_targets(cfg: TrainConfig, splits):
    """The vote distribution of every training pair; a corpus without votes is a ``ConfigError``, not a
    silent hard-label run."""
    targets, with_votes, split = soft_targets(splits.train, splits.target)
    if not with_votes:
        raise ConfigError(f"{cfg.corpus.train_file or f'corpus.name={cfg.corpus.name}'}: corpus.soft_labels=true, "
                          f"but no training pair has annotators' votes; name the columns that hold them with "
                          f"corpus.vote_columns (KLUE-NLI's author, label2..label5 are found by themselves)")
    log.info("soft labels: %d of %d training pairs have votes, %d of them split", with_votes, len(targets), split)
    return targets


def check_monitor(cfg: TrainConfig, splits) -> str:
    """The metric that picks the best checkpoint, refused (``ConfigError``) if the run does not report it.

    A config that names its task is checked when it is read; own files with
    ``corpus.task=auto`` say only here, once read, whether they are classes or scores.
    """
    where = cfg.corpus.train_file or f"corpus.name={cfg.corpus.name}"
    try:
        monitor = cfg.monitor_for(splits.task)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    if monitor == "val_f1" and len(splits.target) != 2:
        raise ConfigError(f"{where}: trainer.monitor='val_f1' is the F1 of the second label of a two-label "
                          f"classifier; this corpus has {len(splits.target)} labels "
                          f"({', '.join(splits.target.names)}): choose val_accuracy, val_macro_f1 or val_loss")
    return monitor


def trainer_is_rank_zero() -> bool:
    """True in the process that owns the outputs (Lightning reads the rank from the environment)."""
    return rank_zero_only.rank == 0


def effective_batch_size(cfg: TrainConfig, trainer: L.Trainer) -> int:
    return cfg.data.batch_size * cfg.trainer.accumulate_grad_batches * trainer.world_size


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder unless told to replace the old one.

    With ``overwrite`` the old run stays until the new one has checked its data
    and config, and is set aside (``RunFolder.set_aside``) rather than deleted.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if RunFolder(out).entries() and not overwrite:
        raise OutputExistsError(
            f"{out}: output folder is not empty; pass overwrite=True to replace it, "
            f"resume='{out}' to continue it, or choose another trainer.output_dir"
        )
    out.mkdir(parents=True, exist_ok=True)
