"""``korpair tune``: a hyperparameter search over a config, each trial a ``korpair train`` run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from korpair.cli.app import out, run, verbose
from korpair.cli.training import ConfigArg, Override


def tune(
    config: ConfigArg = "sample",
    set_: Override = [],
    trials: Annotated[int, typer.Option(help="trials the study should have finished (complete, pruned or "
                                             "failed); with --resume, counting those it has")] = 20,
    output_dir: Annotated[Optional[Path], typer.Option(
        "--output-dir", "-o", help="the study's folder (trials, best.yaml, best-model/, search.png); default: "
                                   "the config's output folder + '-tune'")] = None,
    storage: Annotated[Optional[str], typer.Option(
        help="Optuna storage URL, e.g. sqlite:///study.db; default: study.db in the output folder")] = None,
    study_name: Annotated[Optional[str], typer.Option(help="default: the output folder's name")] = None,
    space: Annotated[Optional[Path], typer.Option(
        help="search-space YAML (params: config key -> a list of choices, or low/high with log: true); "
             "default: the recipes' ranges, written to OUTPUT/space.yaml")] = None,
    resume: Annotated[bool, typer.Option(
        help="continue the study in the output folder (after an interruption, or with more --trials)")] = False,
) -> None:
    """Search hyperparameters with Optuna: each trial trains CONFIG with sampled settings; bad trials are pruned."""
    from korpair import api

    result = run(lambda: api.tune(config, set_, trials=trials, output_dir=output_dir, storage=storage,
                                  study_name=study_name, space=space, resume=resume, verbose=verbose()), "tune")
    table = Table(title=f"best trial {result.best_trial}: {result.monitor} = {result.best_value:.4f}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for key, value in result.best_params.items():
        table.add_row(key, f"{value:.3g}" if isinstance(value, float) else str(value))
    out.print(table)
    states = ", ".join(f"{n} {state}" for state, n in sorted(result.states.items()))
    out.print(f"trials: {states}\nbest config: {result.best_config}  (korpair train {result.best_config})\n"
              f"best model:  {result.best_model_dir}\nstudy:       {result.storage} ({result.study_name}); "
              f"plot: {result.output_dir / 'search.png'}")
