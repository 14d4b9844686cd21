"""``korpair evaluate`` and ``korpair predict``: a model folder and pairs in, a report or predictions out.

A classifier's report is per-class scores and a confusion matrix; a regression
(similarity) model's is Pearson, Spearman, MSE and MAE. ``predict -o -`` puts
JSONL on stdout and nothing else: the count and progress go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from korpair.cli.app import (
    DEFAULT_PRECISION,
    Backend,
    BackendName,
    Calibrated,
    Precision,
    TrustRemoteCode,
    console,
    fail,
    out,
    run,
    verbose,
)
from korpair.config import BUILTIN_TASKS

BatchSize = Annotated[int, typer.Option(help="pairs per forward pass")]


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="a model folder saved by korpair (or any HF classifier)")],
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="labelled CSV/TSV/JSONL/JSON file")] = None,
    corpus: Annotated[Optional[str], typer.Option(
        help=f"a built-in corpus ({', '.join(BUILTIN_TASKS)}) instead of the one the model folder records",
        show_default="the model's own")] = None,
    split: Annotated[str, typer.Option(help="split of the corpus: validation or test")] = "validation",
    data_dir: Annotated[Optional[Path], typer.Option(
        help="folder holding the built-in corpus's files", show_default="korpair's cache")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="report folder")] = None,
    text_a_column: Annotated[Optional[str], typer.Option("--text-a", help="column of the first text")] = None,
    text_b_column: Annotated[Optional[str], typer.Option("--text-b", help="column of the second text")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="column of the gold label or score")] = None,
    encoding: Annotated[str, typer.Option(help="file encoding, e.g. cp949")] = "utf-8",
    batch_size: BatchSize = 64,
    precision: Precision = DEFAULT_PRECISION,
    backend: Backend = BackendName.auto,
    trust_remote_code: TrustRemoteCode = False,
    calibration: Calibrated = True,
    report: Annotated[bool, typer.Option(
        "--report", help="also write report.html: metrics, plots, the surest errors, the least sure right answers "
                         "and accuracy by slice, in one page that opens offline")] = False,
) -> None:
    """Score a model on labelled pairs: report, plots and predictions file.

    A classifier gets accuracy, macro-F1, per-class scores and a confusion matrix;
    a similarity (regression) model Pearson, Spearman, MSE and MAE. Without
    --data or --corpus, the split of the corpus the model was trained on.
    """
    from korpair import api

    result = run(lambda: api.evaluate(model_dir, data, corpus=corpus, split=split, output_dir=output_dir,
                                      batch_size=batch_size, text_a_column=text_a_column,
                                      text_b_column=text_b_column, label_column=label_column, encoding=encoding,
                                      data_dir=data_dir, precision=precision.value, backend=backend.value,
                                      calibrated=calibration, report=report, trust_remote_code=trust_remote_code,
                                      verbose=verbose()),
                 "evaluate")
    m = result.metrics
    backend = f"  (backend {m['backend']})" if m.get("backend") not in (None, "torch") else ""
    out.print(f"evaluated: {m['data']}{backend}", highlight=False)
    if m.get("task") == "regression":
        _print_regression(m)
    else:
        _print_classification(m)
    dropped = sum(m.get("dropped_rows", {}).values())
    if dropped:
        out.print(f"dropped rows: {dropped} (see dropped_rows in metrics.json)")
    files = [*result.files, *(["report.html"] if report else [])]
    out.print(f"report: {result.output_dir}  ({', '.join(files)})")


def _print_regression(m: dict) -> None:
    table = Table(title=f"similarity scores, n={m['n']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    names = {"pearson": "Pearson", "spearman": "Spearman", "mse": "MSE", "mae": "MAE", "f1_at_3": "F1 at 3.0"}
    for key, name in names.items():
        if key in m:
            table.add_row(name, "undefined" if m[key] is None else f"{m[key]:.4f}")
    out.print(table)


def _print_classification(m: dict) -> None:
    table = Table(title=f"{m['data']}  (n={m['n']})")
    for col in ("label", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for name, s in m["per_class"].items():
        table.add_row(name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))
    out.print(table)
    cm = Table(title="confusion matrix (rows: gold, columns: predicted)")
    cm.add_column("")
    for name in m["labels"]:
        cm.add_column(name, justify="right")
    for name, row in zip(m["labels"], m["confusion_matrix"]):
        cm.add_row(name, *map(str, row))
    out.print(cm)
    positive = f"   F1 of {m['positive_label']!r} {m['f1']:.4f}" if "f1" in m else ""
    out.print(f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}{positive}", highlight=False)
    cal = m.get("calibration") or {}
    if cal.get("calibrated") is not None:
        raw, fitted = cal["uncalibrated"], cal["calibrated"]
        shown = "applied" if cal["applied"] else "not applied (--no-calibration)"
        out.print(f"calibration (temperature {cal['temperature']:.3f}, {shown}): ECE {raw['ece']:.4f} -> "
                  f"{fitted['ece']:.4f}, Brier {raw['brier']:.4f} -> {fitted['brier']:.4f}, NLL {raw['nll']:.4f} -> "
                  f"{fitted['nll']:.4f}", highlight=False)
    elif "ece" in m:
        out.print(f"calibration (none fitted): ECE {m['ece']:.4f}, Brier {m['brier']:.4f}, NLL {m['nll']:.4f}",
                  highlight=False)
    if "agreement" in m:
        levels = ", ".join(f"{name} {v['accuracy']:.4f} ({v['pairs']})" for name, v in m["agreement"]["levels"].items())
        out.print(f"accuracy by annotator agreement: {levels}; Jensen-Shannon divergence from the votes "
                  f"{m['agreement']['js_divergence']:.4f}", highlight=False)


def predict(
    model_dir: Annotated[Path, typer.Argument(help="model folder")],
    premise: Annotated[Optional[str], typer.Option(help="first text of one pair")] = None,
    hypothesis: Annotated[Optional[str], typer.Option(help="second text of one pair")] = None,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="CSV/TSV/JSONL/JSON file of pairs")] = None,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", metavar="FILE|-",
        help="file to write, its format by the extension: .jsonl, .json, .csv or .tsv (korpair reads each back "
             "unchanged); - streams JSONL to stdout")] = None,
    text_a_column: Annotated[Optional[str], typer.Option("--text-a", help="column of the first text")] = None,
    text_b_column: Annotated[Optional[str], typer.Option("--text-b", help="column of the second text")] = None,
    encoding: Annotated[str, typer.Option(help="input encoding, e.g. cp949")] = "utf-8",
    batch_size: BatchSize = 64,
    precision: Precision = DEFAULT_PRECISION,
    backend: Backend = BackendName.auto,
    trust_remote_code: TrustRemoteCode = False,
    calibration: Calibrated = True,
) -> None:
    """Classify or score one pair (--premise/--hypothesis) or a whole file (--input/--output)."""
    from korpair import api

    if input is not None:
        if output is None:
            fail("--input needs --output (a .jsonl, .json, .csv or .tsv file, or - for stdout)")
        try:
            n = run(lambda: api.predict_file(model_dir, input, output, batch_size=batch_size,
                                             text_a_column=text_a_column, text_b_column=text_b_column,
                                             encoding=encoding, progress=True, precision=precision.value,
                                             backend=backend.value, calibrated=calibration,
                                             trust_remote_code=trust_remote_code, verbose=verbose()), "predict")
        except BrokenPipeError:  # `korpair predict -o - ... | head`: the reader has all it wants
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        console.print(f"{n} predictions written to {'stdout' if output == '-' else output}", highlight=False)
        return
    if premise is None or hypothesis is None:
        fail("give --premise and --hypothesis, or --input and --output")
    [p] = run(lambda: api.predict(model_dir, [(premise, hypothesis)], precision=precision.value, backend=backend.value,
                                  calibrated=calibration, trust_remote_code=trust_remote_code, verbose=verbose()),
              "predict")
    out.print_json(json.dumps({"premise": premise, "hypothesis": hypothesis, **p.to_dict()}, ensure_ascii=False))
