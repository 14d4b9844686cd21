"""``korpair train``, ``korpair config`` and ``korpair corpora``: a config in, a run (or its YAML, or the data) out.

``train`` and ``config`` take one option per config key, generated from ``TrainConfig`` (``korpair.cli.options``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from korpair.cli.app import console, fail, out, run, verbose
from korpair.cli.options import overrides_from
from korpair.config import BUILTIN_TASKS, load_config

Override = Annotated[list[str], typer.Option("--set", "-s", metavar="KEY=VALUE",
                                              help="override a config key, e.g. --set optim.lr=3e-5 (repeatable; "
                                                   "applied after the other options)")]
ConfigArg = Annotated[str, typer.Argument(
    metavar="CONFIG", help="a preset name (sample, kcbert-klue-nli, ...) or a YAML/JSON config file")]
CONFIG_HELP = ("Every config key is an option named after it (--optim.lr 3e-5). Defaults shown are the built-in "
               "ones; CONFIG may set others (korpair config CONFIG prints them). Lists are YAML ('[a, b]'); "
               "null clears an optional key.")


def train(
    config: ConfigArg = "sample",
    set_: Override = [],
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
    resume: Annotated[Optional[str], typer.Option(
        metavar="DIR|auto",
        help="continue a run: its folder, or 'auto' (the output folder's run of the same config, if any; "
             "else a fresh run)")] = None,
    **options: Any,
) -> None:
    """Fine-tune a classifier or a similarity (regression) model and export the best one as a Hugging Face folder."""
    from korpair import api

    if resume not in (None, "auto") and config != "sample":
        console.print("[yellow]--resume uses the run's saved config; the CONFIG argument is ignored[/yellow]")
    overrides = overrides_from(options, set_)
    result = run(lambda: api.train(config, overrides, overwrite=overwrite, resume=resume, verbose=verbose()),
                 "train")
    print_metrics("validation (best checkpoint)", result.metrics)
    out.print(f"model: {result.model_dir}\nrun:   {result.output_dir}  (metrics.json, training_curves.png, logs/)")


def show_config(
    config: Annotated[Optional[str], typer.Argument(
        metavar="CONFIG", help="preset or file to resolve; default: all defaults")] = None,
    set_: Override = [],
    **options: Any,
) -> None:
    """Print a resolved config as YAML (start your own file from it); takes the options of train."""
    cfg = run(lambda: load_config(config, overrides_from(options, set_)), "config")
    out.print(cfg.to_yaml(), markup=False, highlight=False)


def corpora(
    download: Annotated[Optional[str], typer.Option(help="download this built-in corpus now")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="where to put it")] = None,
) -> None:
    """List the built-in corpora, their task and files, or download one."""
    from korpair.corpora import BUILTIN_CORPORA, default_data_dir, embedded_corpus_dir, fetch_corpus
    from korpair.corpora.builtin import EMBEDDED_CORPORA

    if download:
        if download not in BUILTIN_CORPORA:
            fail(f"unknown corpus {download!r}; built-in: {', '.join(BUILTIN_CORPORA)}")
        files = run(lambda: fetch_corpus(download, data_dir), "corpora")
        for split, paths in files.items():
            out.print(f"{split}: {', '.join(map(str, paths))}")
        return
    table = Table(title="built-in corpora")
    for col in ("name", "task", "files (split: file)", "local folder"):
        table.add_column(col)
    for name in EMBEDDED_CORPORA:
        table.add_row(name, BUILTIN_TASKS[name], "shipped with korpair", str(embedded_corpus_dir(name)))
    for name, c in BUILTIN_CORPORA.items():
        task = BUILTIN_TASKS.get(name, c.task)
        if c.score_range is not None:
            task += f" ({c.score_range[0]:g}-{c.score_range[1]:g})"
        files = "\n".join(f"{split}: {f.filename}" for split, remote in c.splits.items() for f in remote)
        table.add_row(name, task, files, str(default_data_dir(name)))
    out.print(table)


def print_metrics(title: str, metrics: dict) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, int):
            table.add_row(key, str(value))
    out.print(table)
