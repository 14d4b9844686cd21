"""``korpair.tune``: hyperparameter search from a preset or config, as ``korpair.train`` takes them.

Example::

    result = korpair.tune("sample", ["trainer.max_epochs=3"], trials=6)
    result.best_config      # runs/sample-tune/best.yaml: korpair train it to get the best model again
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

from korpair.api.checks import at_least_one
from korpair.config import TrainConfig, load_config
from korpair.errors import ConfigError
from korpair.quiet import quiet

log = logging.getLogger(__name__)


def tune(config: str | Path | TrainConfig | dict | None = "sample", overrides: Sequence[str] = (), *,
         trials: int = 20, output_dir: str | Path | None = None, storage: str | None = None,
         study_name: str | None = None, space: str | Path | None = None, resume: bool = False,
         callbacks: Sequence = (), verbose: bool = False):
    """Search hyperparameters with Optuna; each trial is a training run of ``config`` with ``overrides``.

    The study runs until ``trials`` trials have finished; it is stored in
    ``storage`` (an Optuna URL, default ``sqlite:///OUTPUT_DIR/study.db``), so
    ``resume=True`` continues it after an interruption or with more trials.
    ``output_dir`` defaults to the config's ``trainer.output_dir`` + ``-tune``;
    ``space`` is a search-space YAML (see ``korpair.tuning.space``). Returns a
    ``TuneResult``: the best trial, ``best.yaml`` and ``best-model/``.
    """
    at_least_one("trials", trials)
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("korpair tune needs Optuna: pip install 'korpair[tune]'")
    with quiet(verbose):
        from korpair.tuning import tune as run_study

        cfg = load_config(config, overrides)
        if resume and (overrides or config not in (None, "sample")):
            log.warning("resume: the study goes on with the config and search space it started with; the config "
                        "and overrides given now only place the tune folder")
        out = Path(output_dir) if output_dir is not None else Path(f"{cfg.trainer.output_dir}-tune")
        return run_study(None if resume else cfg, trials=trials, output_dir=out, storage=storage,
                         study_name=study_name, space=space, resume=resume, callbacks=callbacks)
