"""Where a run reports to: Lightning's loggers named by ``trainer.loggers``, and what korpair adds to them.

The CSV log is always kept in ``OUTPUT_DIR/logs`` (the training curves are
drawn from it); TensorBoard writes beside it. MLflow and W&B are configured
as those tools expect, from the config and then their own environment
variables (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``; ``WANDB_MODE``,
``WANDB_PROJECT``, ``WANDB_ENTITY``, ``WANDB_DIR``). Each gets the resolved
config as parameters, the best checkpoint's validation metrics as
``best/...`` and the model folder as an artifact. A resumed run goes on in
the same MLflow run and W&B run: their ids are kept in ``logs/trackers.json``.

Example::

    loggers = build_loggers(cfg, out, resuming=False)
    start_trackers(loggers, cfg, out)          # once the run owns its folder
    ...
    finish_trackers(loggers, metrics, model_dir)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import uuid
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from korpair.atomic import write_text
from korpair.config import TrainConfig
from korpair.errors import ConfigError
from korpair.quiet import hush_imported, verbose_requested

log = logging.getLogger(__name__)

IDS_NAME = "trackers.json"  # in OUTPUT_DIR/logs: the MLflow and W&B runs a resumed run goes on in
PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}


def build_loggers(cfg: TrainConfig, out: Path, resuming: bool) -> list[Logger]:
    """The run's loggers, CSV first; a resumed run's MLflow and W&B loggers point at the runs it started.

    A tracker whose package is missing is a ``ConfigError`` here, before the run starts.
    """
    t = cfg.trainer
    for name in t.loggers:
        if name in PACKAGES and importlib.util.find_spec(PACKAGES[name]) is None:
            raise ConfigError(f"trainer.loggers includes {name!r}, but the {PACKAGES[name]} package is not "
                              f"installed: pip install 'korpair[trackers]' (or drop {name!r} from trainer.loggers)")
    saved = _saved_ids(out) if resuming else {}
    run_name = t.run_name or Path(t.output_dir).resolve().name
    loggers: list[Logger] = [CSVLogger(out, name="logs", version="", flush_logs_every_n_steps=t.log_every_n_steps)]
    if "tensorboard" in t.loggers:
        loggers.append(TensorBoardLogger(out, name="logs", version="tensorboard", default_hp_metric=False))
    if "mlflow" in t.loggers:
        import mlflow

        hush_imported("mlflow")
        # the config, the environment, the URI the run started with, then MLflow's own default
        uri = t.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or saved.get("mlflow_tracking_uri") \
            or mlflow.get_tracking_uri()
        experiment = t.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "korpair"
        loggers.append(MLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=uri,
                                    run_id=saved.get("mlflow_run_id")))
    if "wandb" in t.loggers:
        import wandb

        project = t.experiment or os.environ.get("WANDB_PROJECT") or "korpair"
        run_id = saved.get("wandb_run_id") or uuid.uuid4().hex[:8]
        wandb_logger = WandbLogger(project=project, name=run_name, id=run_id, resume="allow",
                                   save_dir=os.environ.get("WANDB_DIR", "."),
                                   settings=wandb.Settings(silent=not verbose_requested()))
        # Lightning passes anonymous=None, which W&B 0.2x+ warns about on every run ("has no effect")
        wandb_logger._wandb_init.pop("anonymous", None)
        loggers.append(wandb_logger)
    return loggers


def start_trackers(loggers: list[Logger], cfg: TrainConfig, out: Path) -> None:
    """Open the MLflow and W&B runs, record their ids for a resume, log the config as parameters, and say where
    each run is. Called once the run owns its folder (rank 0 only)."""
    ids: dict[str, str] = {}
    params = cfg.to_dict()
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            try:
                _create_experiment(logger)
                ids["mlflow_run_id"] = logger.run_id  # creates the run
            except Exception as err:  # MLflow's own errors have no common base beyond its MlflowException
                raise ConfigError(f"trainer.loggers: MLflow could not start a run ({_first_line(err)}); set "
                                  f"trainer.tracking_uri or MLFLOW_TRACKING_URI") from None
            uri = ids["mlflow_tracking_uri"] = logger.experiment.tracking_uri
            log.info("MLflow run %s in %s (browse it with mlflow ui, that store as its backend)", logger.run_id, uri)
        elif isinstance(logger, WandbLogger):
            try:
                run = logger.experiment
            except Exception as err:  # wandb.errors.UsageError and its kin: no login, no network
                raise ConfigError(f"trainer.loggers: W&B could not start a run ({_first_line(err)}); log in with "
                                  f"`wandb login`, or set WANDB_MODE=offline to keep the run on disk") from None
            ids["wandb_run_id"] = run.id
            offline = run.settings.mode in ("offline", "dryrun")
            log.info("W&B run %s%s: %s", run.id, " (offline; `wandb sync` it later)" if offline else "",
                     run.settings.sync_dir if offline else run.url)
        if not isinstance(logger, CSVLogger):  # the run folder has the config as korpair_train.yaml already
            logger.log_hyperparams(params)
    if ids:
        write_text(out / "logs" / IDS_NAME, json.dumps(ids, indent=2) + "\n")


def finish_trackers(loggers: list[Logger], metrics: dict, model_dir: Path, step: int) -> None:
    """Log the best checkpoint's validation metrics and the model folder, then close the runs."""
    final = {f"best/{k}": v for k, v in metrics.items() if k.startswith("val_") and isinstance(v, float)}
    final["train_seconds"] = float(metrics.get("train_seconds", 0.0))
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            continue  # metrics.json beside it holds these
        try:
            _finish(logger, final, model_dir, step)
        except Exception as err:  # the run is finished and in its folder; a tracker that fails now loses only this
            log.warning("could not log the final metrics and model to %s (%s)", type(logger).__name__,
                        _first_line(err))


def _finish(logger: Logger, final: dict[str, float], model_dir: Path, step: int) -> None:
    logger.log_metrics(final, step=step)
    if isinstance(logger, MLFlowLogger):
        logger.experiment.log_artifacts(logger.run_id, str(model_dir), artifact_path="model")
        logger.finalize("success")
    elif isinstance(logger, WandbLogger):
        import wandb

        artifact = wandb.Artifact(f"model-{logger.experiment.id}", type="model", metadata=final)
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):  # add_dir prints a line of its own
            artifact.add_file(str(path), name=path.relative_to(model_dir).as_posix())
        logger.experiment.log_artifact(artifact)
        logger.experiment.finish()
    else:
        logger.save()


def abandon_trackers(loggers: list[Logger], interrupted: bool) -> None:
    """Mark the MLflow and W&B runs of a run that failed or was stopped (a resume goes on in them)."""
    for logger in loggers:
        try:
            if isinstance(logger, MLFlowLogger):
                logger.finalize("KILLED" if interrupted else "failed")  # a run never opened is left alone
            elif isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
                logger.experiment.finish(exit_code=1)
        except Exception as err:  # the run's own failure is what the user needs to see
            log.warning("could not close the %s run (%s)", type(logger).__name__, _first_line(err))


def _create_experiment(logger: MLFlowLogger) -> None:
    # Lightning would create it too, with a warning that a new experiment is no news to warn about. Its logger
    # has no public getter for the URI and name it was given (``name`` is the id, and opens the run).
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logger._tracking_uri)
    if client.get_experiment_by_name(logger._experiment_name) is None:
        client.create_experiment(logger._experiment_name)


def _saved_ids(out: Path) -> dict[str, str]:
    path = out / "logs" / IDS_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s); the trackers start new runs", path, err)
        return {}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
