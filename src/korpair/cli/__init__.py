"""The ``korpair`` command: parse options, call ``korpair.api``, print the result.

Errors a user can fix (``KorpairError``) are printed in one red paragraph, in the
flags of the command that is running (``korpair.cli.options.in_flags``), and exit
with status 2; nothing here does real work. ``train`` and ``config`` take one
option per config key, generated from ``TrainConfig``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from korpair.cli.options import ConfigCommand, LogFlags, command_flags, in_flags, overrides_from, with_config_options
from korpair.config import load_config
from korpair.errors import KorpairError, TrainingInterrupted
from korpair.types import INFERENCE_PRECISIONS
from korpair.version import __version__

_LOG_FLAGS = LogFlags()  # set to the running command's flags by _run
app = typer.Typer(
    name="korpair", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Fine-tune, evaluate and serve Korean sentence-pair classifiers (NLI and more).",
)
console = Console(stderr=True)
out = Console()


_VERBOSE = False


def _setup_logging(verbose: bool) -> None:
    global _VERBOSE
    _VERBOSE = verbose
    logging.basicConfig(level=logging.WARNING, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    logging.getLogger().handlers[0].addFilter(_LOG_FLAGS)
    logging.getLogger("korpair").setLevel(logging.DEBUG if verbose else logging.INFO)  # DEBUG also lets pooch speak
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def _quiet_libraries() -> None:
    """Route Lightning's and transformers' chatter through our handler, at our level.

    Called after the libraries are imported: Lightning installs its own handler at import.
    """
    level = logging.INFO if _VERBOSE else logging.WARNING
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.setLevel(level)
        lg.propagate = True
    if not _VERBOSE:
        import warnings

        warnings.filterwarnings("ignore", module=r"(lightning|torch|transformers)(\.|$)")
        warnings.filterwarnings("ignore", message=r".*(does not have many workers|LeafSpec|isinstance\(treespec).*")
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _version(value: bool) -> None:
    if value:
        out.print(f"korpair {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show library logs and warnings")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="print the version and exit")] = None,
) -> None:
    _setup_logging(verbose)


TrustRemoteCode = Annotated[bool, typer.Option(help="run model code from the hub (only for models you trust)")]
# Read from korpair.types, so the choices follow the library's list.
InferencePrecision = Enum("InferencePrecision", {name: name for name in INFERENCE_PRECISIONS}, type=str)
Precision = Annotated[InferencePrecision, typer.Option(
    help="32: exact fp32 scores; the others autocast, about 2x the pairs/s where the hardware computes in them "
         "(scores within ~1e-2)")]
_DEFAULT_PRECISION = InferencePrecision("32" if "32" in INFERENCE_PRECISIONS else INFERENCE_PRECISIONS[0])
Override = Annotated[list[str], typer.Option("--set", "-s", metavar="KEY=VALUE",
                                              help="override a config key, e.g. --set optim.lr=3e-5 (repeatable; "
                                                   "applied after the other options)")]
ConfigArg = Annotated[str, typer.Argument(
    metavar="CONFIG", help="a preset name (sample, kcbert-klue-nli, ...) or a YAML/JSON config file")]
_CONFIG_HELP = ("Every config key is an option named after it (--optim.lr 3e-5). Defaults shown are the built-in "
                "ones; CONFIG may set others (korpair config CONFIG prints them). Lists are YAML ('[a, b]'); "
                "null clears an optional key.")


@app.command(cls=ConfigCommand, epilog=_CONFIG_HELP)
@with_config_options
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
    """Fine-tune a classifier and export the best model as a Hugging Face folder."""
    from korpair import api

    if resume not in (None, "auto") and config != "sample":
        console.print("[yellow]--resume uses the run's saved config; the CONFIG argument is ignored[/yellow]")
    overrides = overrides_from(options, set_)
    result = _run(lambda: api.train(config, overrides, overwrite=overwrite, resume=resume), "train")
    _print_metrics("validation (best checkpoint)", result.metrics)
    out.print(f"model: {result.model_dir}\nrun:   {result.output_dir}  (metrics.json, training_curves.png, logs/)")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="a model folder saved by korpair (or any HF classifier)")],
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="labelled CSV/TSV/JSONL/JSON file")] = None,
    corpus: Annotated[Optional[str], typer.Option(
        help="a built-in corpus (sample, klue-nli, kornli) instead of the one the model folder records",
        show_default="the model's own")] = None,
    split: Annotated[str, typer.Option(help="split of the corpus: validation or test")] = "validation",
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="report folder")] = None,
    text_a_column: Annotated[Optional[str], typer.Option("--text-a", help="column of the first text")] = None,
    text_b_column: Annotated[Optional[str], typer.Option("--text-b", help="column of the second text")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="column of the gold label")] = None,
    encoding: Annotated[str, typer.Option(help="file encoding, e.g. cp949")] = "utf-8",
    batch_size: Annotated[int, typer.Option(help="pairs per forward pass")] = 64,
    precision: Precision = _DEFAULT_PRECISION,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Accuracy, macro-F1, per-class scores, confusion matrix and a predictions file.

    Without --data or --corpus, the split of the corpus the model was trained on.
    """
    from korpair import api

    report = _run(lambda: api.evaluate(model_dir, data, corpus=corpus, split=split, output_dir=output_dir,
                                       batch_size=batch_size, text_a_column=text_a_column,
                                       text_b_column=text_b_column, label_column=label_column, encoding=encoding,
                                       precision=precision.value, trust_remote_code=trust_remote_code), "evaluate")
    m = report.metrics
    out.print(f"evaluated: {m['data']}", highlight=False)
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
    out.print(f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}")
    out.print(f"report: {report.output_dir}  (metrics.json, confusion_matrix.png, predictions.jsonl)")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="model folder")],
    premise: Annotated[Optional[str], typer.Option(help="first text of one pair")] = None,
    hypothesis: Annotated[Optional[str], typer.Option(help="second text of one pair")] = None,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="CSV/TSV/JSONL/JSON file of pairs")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="JSONL or CSV/TSV file to write")] = None,
    text_a_column: Annotated[Optional[str], typer.Option("--text-a", help="column of the first text")] = None,
    text_b_column: Annotated[Optional[str], typer.Option("--text-b", help="column of the second text")] = None,
    encoding: Annotated[str, typer.Option(help="input encoding, e.g. cp949")] = "utf-8",
    batch_size: Annotated[int, typer.Option(help="pairs per forward pass")] = 64,
    precision: Precision = _DEFAULT_PRECISION,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Classify one pair (--premise/--hypothesis) or a whole file (--input/--output)."""
    from korpair import api

    if input is not None:
        if output is None:
            _fail("--input needs --output (a .jsonl, .csv or .tsv file)")
        n = _run(lambda: api.predict_file(model_dir, input, output, batch_size=batch_size,
                                          text_a_column=text_a_column, text_b_column=text_b_column,
                                          encoding=encoding, progress=True, precision=precision.value,
                                          trust_remote_code=trust_remote_code), "predict")
        out.print(f"{n} predictions written to {output}")
        return
    if premise is None or hypothesis is None:
        _fail("give --premise and --hypothesis, or --input and --output")
    [p] = _run(lambda: api.predict(model_dir, [(premise, hypothesis)], precision=precision.value,
                                   trust_remote_code=trust_remote_code), "predict")
    out.print_json(json.dumps({"premise": premise, "hypothesis": hypothesis, **p.to_dict()}, ensure_ascii=False))


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="model folder saved by korpair (or any HF classifier)")],
    host: Annotated[str, typer.Option(
        help="address to listen on; 0.0.0.0 lets other machines in (no auth)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one")] = 8000,
    max_batch_size: Annotated[Optional[int], typer.Option(
        help="pairs per model call, gathered from concurrent requests", show_default="32")] = None,
    max_wait_ms: Annotated[Optional[float], typer.Option(help="how long a request may wait for others to batch with",
                                                         show_default="5")] = None,
    batching: Annotated[bool, typer.Option("--batching/--no-batching",
                                           help="merge concurrent requests into one model call")] = True,
    max_text_chars: Annotated[Optional[int], typer.Option(help="characters per premise or hypothesis",
                                                          show_default="1000")] = None,
    max_pairs: Annotated[Optional[int], typer.Option(help="pairs per request", show_default="64")] = None,
    max_body_bytes: Annotated[Optional[int], typer.Option(help="request body size; larger ones get 413",
                                                          show_default="1048576")] = None,
    max_queue_pairs: Annotated[Optional[int], typer.Option(
        help="pairs waiting for the model; a request that would pass it gets 503", show_default="1024")] = None,
    request_timeout_s: Annotated[Optional[float], typer.Option(
        help="seconds from a request's headers to its answer; then 408 or 503", show_default="30")] = None,
    header_timeout_s: Annotated[Optional[float], typer.Option(
        help="seconds a connection may take to send its request headers; then it is closed", show_default="10")] = None,
    keep_alive_s: Annotated[Optional[float], typer.Option(help="seconds an idle keep-alive connection stays open",
                                                          show_default="5")] = None,
    max_connections: Annotated[Optional[int], typer.Option(
        help="open connections; past it the longest idle one is closed", show_default="1000")] = None,
    allowed_hosts: Annotated[Optional[list[str]], typer.Option(
        help="Host names served besides localhost, 127.0.0.1 and [::1] (repeat or comma-separate; "
             "'*.example.org' subdomains, '*' any)", metavar="NAMES", show_default="none")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N", show_default="cuda if available")] = None,
    precision: Precision = _DEFAULT_PRECISION,
) -> None:
    """Serve a model over HTTP: JSON API (/predict, /docs) and a Korean demo page (/). Ctrl+C stops it."""
    from korpair import api

    # Only the options given: ServeLimits holds the defaults.
    options = {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms, "batching": batching,
               "max_text_chars": max_text_chars, "max_pairs": max_pairs, "max_body_bytes": max_body_bytes,
               "max_queue_pairs": max_queue_pairs, "request_timeout_s": request_timeout_s,
               "header_timeout_s": header_timeout_s, "keep_alive_s": keep_alive_s, "max_connections": max_connections,
               "allowed_hosts": allowed_hosts}
    _run(lambda: api.serve(model_dir, host=host, port=port, device=device, precision=precision.value,
                           limits={k: v for k, v in options.items() if v is not None}), "serve")


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="model folder to export")],
    format: Annotated[str, typer.Option("--format", help="export format (onnx)")] = "onnx",
    quantize: Annotated[Optional[str], typer.Option(help="int8: dynamic int8 quantization")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o",
                                                       help="default: MODEL_DIR/onnx (or onnx-int8)")] = None,
) -> None:
    """Export to ONNX for ONNX Runtime; predict, evaluate and serve accept the exported folder."""
    from korpair import api

    if format != "onnx":
        _fail(f"--format {format!r}: only 'onnx' is supported")
    if quantize not in (None, "int8"):
        _fail(f"--quantize {quantize!r}: only 'int8' is supported")
    folder = _run(lambda: api.export(model_dir, output_dir, quantize=quantize == "int8"), "export")
    out.print(f"exported to {folder}  (korpair predict/evaluate/serve {folder})")


@app.command()
def corpora(
    download: Annotated[Optional[str], typer.Option(help="download this built-in corpus now")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="where to put it")] = None,
) -> None:
    """List the built-in corpora and their files, or download one."""
    from korpair.corpora import BUILTIN_CORPORA, default_data_dir, fetch_corpus

    if download:
        if download not in BUILTIN_CORPORA:
            _fail(f"unknown corpus {download!r}; built-in: {', '.join(BUILTIN_CORPORA)}")
        files = _run(lambda: fetch_corpus(download, data_dir), "corpora")
        for split, paths in files.items():
            out.print(f"{split}: {', '.join(map(str, paths))}")
        return
    table = Table(title="built-in corpora (plus 'sample', shipped with korpair)")
    for col in ("name", "split", "file", "local folder"):
        table.add_column(col)
    for name, c in BUILTIN_CORPORA.items():
        for split, files in c.splits.items():
            for f in files:
                table.add_row(name, split, f.filename, str(default_data_dir(name)))
    out.print(table)


@app.command("config", cls=ConfigCommand, epilog=_CONFIG_HELP)
@with_config_options
def show_config(
    config: Annotated[Optional[str], typer.Argument(
        metavar="CONFIG", help="preset or file to resolve; default: all defaults")] = None,
    set_: Override = [],
    **options: Any,
) -> None:
    """Print a resolved config as YAML (start your own file from it); takes the options of train."""
    cfg = _run(lambda: load_config(config, overrides_from(options, set_)), "config")
    out.print(cfg.to_yaml(), markup=False, highlight=False)


def _print_metrics(title: str, metrics: dict) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, int):
            table.add_row(key, str(value))
    out.print(table)


def _run(call: Callable, verb: str):
    """Call the API; a ``KorpairError`` is printed in ``korpair VERB``'s flags and exits 2."""
    _quiet_libraries()
    flags = command_flags(typer.main.get_command(app).commands[verb])
    _LOG_FLAGS.flags = flags
    try:
        return call()
    except TrainingInterrupted as err:
        console.print(f"[bold yellow]stopped:[/bold yellow] {escape(in_flags(str(err), flags))}", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(130) from None
    except KorpairError as err:
        _fail(in_flags(str(err), flags))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None


def _fail(message: str) -> None:
    # escape: file contents in a message (e.g. "[/b]") must not be read as console markup
    console.print(f"[bold red]error:[/bold red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def main() -> None:
    app(prog_name="korpair")


if __name__ == "__main__":
    sys.exit(main())
