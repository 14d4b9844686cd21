"""``tune``: an Optuna study over a config's search space, each trial a normal korpair run, read top to bottom.

The base config and the space are checked and the data read once before
anything is written. The study lives in its storage (SQLite in the tune
folder by default) with the base config and the space, so a resumed study
goes on with them. Trials run until ``trials`` of them have finished
(complete, pruned or failed), each in ``OUTPUT/trials/trial-NNNN``, with a
callback that reports the monitored metric at every validation and stops a
trial the pruner gives up on. A trial stopped by a signal (or killed) is run
again on resume, from its checkpoint, under a new number; a trial that fails
(e.g. out of memory) is recorded as failed and the study goes on. Only the
best trial keeps its model folder. At the end: ``best.yaml`` (runnable with
``korpair train``), ``best-model/``, ``search.png`` and ``tune.json``.

Example::

    result = tune(TrainConfig.from_file("sample.yaml"), trials=6, output_dir=Path("runs/tune"))
    result.best_value, result.best_config
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import yaml
from filelock import FileLock, Timeout

from korpair.atomic import write_dir, write_text
from korpair.config import LOWER_IS_BETTER, TrainConfig
from korpair.corpora import load_splits
from korpair.errors import ConfigError, KorpairError, OutputExistsError, TrainingInterrupted
from korpair.quiet import hush_imported
from korpair.training import fit
from korpair.tuning.plots import plot_search
from korpair.tuning.space import SearchSpace, as_override, load_space, parse_space

log = logging.getLogger(__name__)

STUDY_NAME = "study.json"  # in the tune folder: where the study is stored, so that resume finds it


@dataclass
class TuneResult:
    """Where a study is, its best trial, and how many trials ended how."""

    output_dir: Path
    storage: str
    study_name: str
    monitor: str
    best_trial: int
    best_value: float
    best_params: dict
    best_config: Path
    best_model_dir: Path
    states: dict[str, int]

    def __str__(self) -> str:
        return (f"best trial {self.best_trial}: {self.monitor}={self.best_value:.4f} "
                f"({', '.join(f'{k}={v}' for k, v in self.best_params.items())}); config {self.best_config}")


class TuneInterrupted(TrainingInterrupted):
    """A study stopped by a signal; its finished trials are stored, the one that ran resumes from its checkpoint."""

    def __init__(self, output_dir: Path, trial: int) -> None:
        self.output_dir, self.step = output_dir, trial
        KorpairError.__init__(self, f"tuning interrupted in trial {trial}; the finished trials are stored and trial "
                                    f"{trial} goes on from its checkpoint: continue with resume=True (in "
                                    f"{output_dir})")


def tune(cfg: TrainConfig | None, *, trials: int, output_dir: str | Path, storage: str | None = None,
         study_name: str | None = None, space: str | Path | None = None, resume: bool = False,
         callbacks: Sequence[L.Callback] = ()) -> TuneResult:
    """Run (or with ``resume`` continue) a study of ``cfg`` until ``trials`` trials have finished.

    ``storage`` is an Optuna storage URL (default ``sqlite:///OUTPUT/study.db``);
    ``space`` a search-space YAML (default: ``korpair.tuning.space``'s). A
    resumed study uses the config and space it was started with (``cfg`` and
    ``space`` are then ignored). ``callbacks`` are added to every trial's Trainer.
    """
    import optuna

    hush_imported("optuna")
    out = Path(output_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / ".tune.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputExistsError(f"{out}: another korpair tune is running in this folder; wait for it, or choose "
                                f"another output_dir") from None
    try:
        try:
            study, cfg, search = _open_study(optuna, cfg, out, storage, study_name, space, resume)
        except BaseException:
            if created:  # refused before the study began: leave no empty folder behind
                lock.release()
                shutil.rmtree(out, ignore_errors=True)
            raise
        monitor = study.user_attrs["monitor"]
        _retry_interrupted(optuna, study)
        _run_trials(optuna, study, cfg, search, out, trials, monitor, callbacks)
        return _summarise(optuna, study, cfg, out, monitor)
    finally:
        lock.release()


def _open_study(optuna, cfg: TrainConfig | None, out: Path, storage: str | None, study_name: str | None,
                space: str | Path | None, resume: bool):
    """The study and the config and space it searches: stored ones on resume, else checked and stored now."""
    saved = out / STUDY_NAME
    if resume:
        if not saved.is_file():
            raise ConfigError(f"{out}: holds no study to resume (no {STUDY_NAME}); start one without resume")
        where = json.loads(saved.read_text(encoding="utf-8"))
        for given, key in ((storage, "storage"), (study_name, "study_name")):
            if given is not None and given != where[key]:
                raise ConfigError(f"{out}: its study is {key}={where[key]!r}, not {given!r}")
        study = optuna.load_study(study_name=where["study_name"], storage=where["storage"])
        cfg = TrainConfig.from_dict(yaml.safe_load(study.user_attrs["config"]), f"study {where['study_name']}")
        return study, cfg, parse_space(yaml.safe_load(study.user_attrs["space"]), f"study {where['study_name']}")
    if saved.is_file():
        raise OutputExistsError(f"{out}: holds a study already; continue it with resume=True, or choose another "
                                f"output_dir")
    if any(p.name != ".tune.lock" for p in out.iterdir()):
        raise OutputExistsError(f"{out}: output folder is not empty; choose another output_dir")
    cfg = cfg or TrainConfig()
    search = load_space(space, cfg)
    splits = load_splits(cfg.corpus, stream_train=True)  # the data checked once, before any trial
    try:
        monitor = cfg.monitor_for(splits.task)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    storage = _absolute(storage) if storage else f"sqlite:///{(out / 'study.db').resolve()}"
    study_name = study_name or out.resolve().name
    pruner = optuna.pruners.MedianPruner(n_startup_trials=search.pruner["startup_trials"],
                                         n_warmup_steps=search.pruner["warmup_validations"])
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, pruner=pruner,
                                    sampler=optuna.samplers.TPESampler(seed=cfg.trainer.seed),
                                    direction="minimize" if monitor in LOWER_IS_BETTER else "maximize")
    except optuna.exceptions.DuplicatedStudyError:
        raise OutputExistsError(f"storage {storage} already has a study named {study_name!r}; choose another "
                                f"study_name, or resume it from its own output_dir") from None
    except Exception as err:  # SQLAlchemy's errors for a URL it cannot open
        raise ConfigError(f"storage {storage!r}: cannot open it ({str(err).splitlines()[0]})") from None
    study.set_user_attr("config", cfg.to_yaml())
    study.set_user_attr("space", search.to_yaml())
    study.set_user_attr("monitor", monitor)
    write_text(out / "space.yaml", search.to_yaml())
    write_text(saved, json.dumps({"storage": storage, "study_name": study_name}, indent=2) + "\n")
    log.info("study %r in %s: %s by %s, %d parameters", study_name, storage, study.direction.name.lower(),
             monitor, len(search.params))
    return study, cfg, search


def _absolute(storage: str) -> str:
    """A relative SQLite path made absolute, so that resuming from another folder finds the same file."""
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not storage.startswith(prefix + "/") and storage != prefix + ":memory:":
        return prefix + str(Path(storage[len(prefix):]).resolve())
    return storage


def _retry_interrupted(optuna, study) -> None:
    """Queue again, with the same parameters, each trial a signal stopped or a kill left running.

    A failed trial with an ``error`` attribute failed on its own (e.g. out of
    memory) and counts as finished; one without was interrupted.
    """
    state = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        # this process holds the tune folder: a trial still marked running belongs to a process that died
        study.tell(t.number, state=state.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if _interrupted(optuna, t) and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            log.info("trial %d was interrupted: it runs again from its checkpoint", t.number)


def _run_trials(optuna, study, cfg: TrainConfig, search: SearchSpace, out: Path, trials: int, monitor: str,
                callbacks: Sequence[L.Callback]) -> None:
    state = optuna.trial.TrialState
    while (done := _finished(optuna, study)) < trials:
        trial = study.ask()
        folder = out / "trials" / f"trial-{trial.number:04d}"
        retry_of = trial.user_attrs.get("retry_of")
        old = out / "trials" / f"trial-{retry_of:04d}" if retry_of is not None else None
        if old is not None and old.is_dir() and not folder.exists():
            old.rename(folder)  # the run goes on from its checkpoint under the new number
        overrides = [*search.suggest(trial), f"trainer.output_dir={folder}", "trainer.progress_bar=false"]
        report = _Report(trial, monitor)
        log.info("trial %d (%d of %d): %s", trial.number, done + 1, trials, " ".join(overrides[:-2]))
        try:
            result = fit(cfg.with_overrides(overrides), resume=old is not None, callbacks=[report, *callbacks])
        except (TrainingInterrupted, KeyboardInterrupt):
            study.tell(trial, state=state.FAIL)  # no error attribute: interrupted, run again on resume
            raise TuneInterrupted(out, trial.number) from None
        except Exception as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            trial.set_user_attr("error", message)
            study.tell(trial, state=state.FAIL)
            if isinstance(err, KorpairError):
                raise  # bad input or a full disk: every trial would fail the same way
            # out of memory, a numerical failure: this trial's parameters, not the study's
            log.warning("trial %d failed (%s); the study goes on", trial.number, message)
            _remove(folder / "checkpoints")
            continue
        value = result.metrics[monitor]
        if report.pruned:
            study.tell(trial, state=state.PRUNED)
            log.info("trial %d pruned after %d validations (%s=%.4f)", trial.number, report.validations, monitor,
                     value)
        else:
            study.tell(trial, value)
            log.info("trial %d: %s=%.4f (best so far: trial %d)", trial.number, monitor, value,
                     study.best_trial.number)
        _keep_best_only(optuna, study, out)


class _Report(L.Callback):
    """Reports the monitored metric to Optuna at each validation; stops the run (gracefully) when pruned."""

    def __init__(self, trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.validations, self.pruned = 0, False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.validations += 1
        self.trial.report(float(trainer.callback_metrics[self.monitor]), self.validations)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def _interrupted(optuna, trial) -> bool:
    return trial.state == optuna.trial.TrialState.FAIL and "error" not in trial.user_attrs


def _finished(optuna, study) -> int:
    state = optuna.trial.TrialState
    return sum(1 for t in study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED, state.FAIL))
               if not _interrupted(optuna, t))


def _keep_best_only(optuna, study, out: Path) -> None:
    """Finished trials lose their checkpoints, and their model folders but the best one's: a study of a
    base-size model would otherwise keep gigabytes per trial."""
    best = study.best_trial.number if _any_complete(optuna, study) else None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                      optuna.trial.TrialState.PRUNED)):
        folder = out / "trials" / f"trial-{t.number:04d}"
        _remove(folder / "checkpoints")
        if t.number != best:
            _remove(folder / "model")


def _summarise(optuna, study, cfg: TrainConfig, out: Path, monitor: str) -> TuneResult:
    if not _any_complete(optuna, study):
        raise KorpairError(f"{out}: no trial of the study completed (see tune.json and the trials' folders)")
    best = study.best_trial
    best_cfg = cfg.with_overrides([*(as_override(k, v) for k, v in best.params.items()),
                                   f"trainer.output_dir={out / 'best-run'}"])
    best_config = out / "best.yaml"
    header = (f"# korpair tune: best trial {best.number} of study {study.study_name!r}, {monitor}="
              f"{best.value:.6f}\n# train it again: korpair train {best_config}\n")
    write_text(best_config, header + best_cfg.to_yaml())
    model = out / "trials" / f"trial-{best.number:04d}" / "model"
    best_model = out / "best-model"
    if model.is_dir():
        shutil.rmtree(best_model, ignore_errors=True)
        write_dir(best_model, lambda tmp: shutil.copytree(model, tmp, dirs_exist_ok=True))
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    plot_search(study, out / "search.png", monitor)
    storage = json.loads((out / STUDY_NAME).read_text(encoding="utf-8"))["storage"]
    result = TuneResult(out, storage, study.study_name, monitor, best.number, float(best.value), dict(best.params),
                        best_config, best_model, states)
    summary = {**asdict(result), "output_dir": str(out), "best_config": str(best_config),
               "best_model_dir": str(best_model),
               "trials": [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
                           **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {})}
                          for t in study.get_trials(deepcopy=False)]}
    write_text(out / "tune.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return result


def _any_complete(optuna, study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
