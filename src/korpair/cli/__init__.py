"""The ``korpair`` command: parse options, call ``korpair.api``, print the result.

Errors a user can fix (``KorpairError``) are printed in one red paragraph and
exit with status 2; nothing here does real work.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from korpair.errors import KorpairError, TrainingInterrupted
from korpair.version import __version__

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
    logging.getLogger("korpair").setLevel(logging.INFO)
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
class InferencePrecision(str, Enum):
    fp32 = "32"
    bf16 = "bf16"


Precision = Annotated[InferencePrecision, typer.Option(
    help="32: exact fp32 scores; bf16: autocast, about 2x the pairs/s on a CPU with AVX512-BF16 or AMX "
         "and on recent GPUs (scores within ~1e-2)")]
Override = Annotated[list[str], typer.Option("--set", "-s", metavar="KEY=VALUE",
                                              help="override a config key, e.g. --set optim.lr=3e-5 (repeatable)")]


@app.command()
def train(
    config: Annotated[str, typer.Argument(
        help="a preset name (sample, kcbert-klue-nli, ...) or a YAML/JSON config file")] = "sample",
    set_: Override = [],
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="where the run goes")] = None,
    corpus: Annotated[Optional[str], typer.Option(help="sample, klue-nli, kornli or files")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="folder with a built-in corpus's files")] = None,
    train_file: Annotated[Optional[Path], typer.Option(help="your training file (CSV/TSV/JSONL/JSON)")] = None,
    validation_file: Annotated[Optional[Path], typer.Option(help="your validation file")] = None,
    model: Annotated[Optional[str], typer.Option(help="hub name or local folder of a checkpoint")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="trainer.max_epochs")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="trainer.max_steps")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="data.batch_size")] = None,
    lr: Annotated[Optional[float], typer.Option(help="optim.lr")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="auto (bf16-mixed where the hardware computes in bf16, else 32), 32, bf16-mixed or 16-mixed")] = None,
    accelerator: Annotated[Optional[str], typer.Option(help="cpu, gpu or auto")] = None,
    devices: Annotated[Optional[str], typer.Option(help="number of devices or auto")] = None,
    num_nodes: Annotated[Optional[int], typer.Option(help="machines (DDP)")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="auto, ddp, fsdp, deepspeed")] = None,
    seed: Annotated[Optional[int], typer.Option(help="trainer.seed")] = None,
    trust_remote_code: TrustRemoteCode = False,
    overwrite: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
    resume: Annotated[Optional[str], typer.Option(
        help="continue an interrupted run: its folder, or 'auto' (the output folder, if it has a checkpoint)")] = None,
) -> None:
    """Fine-tune a classifier and export the best model as a Hugging Face folder."""
    from korpair import api

    shortcuts = {
        "trainer.output_dir": output_dir, "corpus.name": corpus, "corpus.data_dir": data_dir,
        "corpus.train_file": train_file, "corpus.validation_file": validation_file,
        "model.name_or_path": model, "trainer.max_epochs": epochs, "trainer.max_steps": max_steps,
        "data.batch_size": batch_size, "optim.lr": lr, "trainer.precision": precision,
        "trainer.accelerator": accelerator, "trainer.devices": devices, "trainer.num_nodes": num_nodes,
        "trainer.strategy": strategy, "trainer.seed": seed,
    }
    overrides = [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + list(set_)
    if train_file is not None and corpus is None:
        overrides.insert(0, "corpus.name=files")
    if model is not None:
        overrides.append("model.from_scratch=false")
    if trust_remote_code:
        overrides.append("model.trust_remote_code=true")
    if resume is not None and resume != "auto" and (config != "sample" or corpus or model):
        console.print("[yellow]--resume uses the run's saved config; the CONFIG argument is ignored[/yellow]")
    result = _run(lambda: api.train(config, overrides, overwrite=overwrite, resume=resume))
    _print_metrics("validation (best checkpoint)", result.metrics)
    out.print(f"model: {result.model_dir}\nrun:   {result.output_dir}  (metrics.json, training_curves.png, logs/)")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="a model folder saved by korpair (or any HF classifier)")],
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="labelled CSV/TSV/JSONL/JSON file")] = None,
    corpus: Annotated[str, typer.Option(help="built-in corpus when --data is not given")] = "sample",
    split: Annotated[str, typer.Option(help="split of --corpus: validation or test")] = "validation",
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="report folder")] = None,
    text_a: Annotated[Optional[str], typer.Option(help="column of the first text")] = None,
    text_b: Annotated[Optional[str], typer.Option(help="column of the second text")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="column of the gold label")] = None,
    encoding: Annotated[str, typer.Option(help="file encoding, e.g. cp949")] = "utf-8",
    batch_size: Annotated[int, typer.Option(help="pairs per forward pass")] = 64,
    precision: Precision = InferencePrecision.fp32,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Accuracy, macro-F1, per-class scores, confusion matrix and a predictions file."""
    from korpair import api

    report = _run(lambda: api.evaluate(model_dir, data, corpus=corpus, split=split, output_dir=output_dir,
                                       batch_size=batch_size, text_a_column=text_a, text_b_column=text_b,
                                       label_column=label_column, encoding=encoding, precision=precision.value,
                                       trust_remote_code=trust_remote_code))
    m = report.metrics
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
    text_a: Annotated[Optional[str], typer.Option(help="column of the first text")] = None,
    text_b: Annotated[Optional[str], typer.Option(help="column of the second text")] = None,
    encoding: Annotated[str, typer.Option(help="input encoding, e.g. cp949")] = "utf-8",
    batch_size: Annotated[int, typer.Option(help="pairs per forward pass")] = 64,
    precision: Precision = InferencePrecision.fp32,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Classify one pair (--premise/--hypothesis) or a whole file (--input/--output)."""
    from korpair import api

    if input is not None:
        if output is None:
            _fail("--input needs --output (a .jsonl, .csv or .tsv file)")
        n = _run(lambda: api.predict_file(model_dir, input, output, batch_size=batch_size, text_a_column=text_a,
                                          text_b_column=text_b, encoding=encoding, progress=True,
                                          precision=precision.value, trust_remote_code=trust_remote_code))
        out.print(f"{n} predictions written to {output}")
        return
    if premise is None or hypothesis is None:
        _fail("give --premise and --hypothesis, or --input and --output")
    [p] = _run(lambda: api.predict(model_dir, [(premise, hypothesis)], precision=precision.value,
                                   trust_remote_code=trust_remote_code))
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
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or cuda:N", show_default="cuda if available")] = None,
    precision: Precision = InferencePrecision.fp32,
) -> None:
    """Serve a model over HTTP: JSON API (/predict, /docs) and a Korean demo page (/). Ctrl+C stops it."""
    from korpair import api

    # Only the options given: ServeLimits holds the defaults.
    options = {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms, "batching": batching,
               "max_text_chars": max_text_chars, "max_pairs": max_pairs, "max_body_bytes": max_body_bytes}
    _run(lambda: api.serve(model_dir, host=host, port=port, device=device, precision=precision.value,
                           limits={k: v for k, v in options.items() if v is not None}))


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
    folder = _run(lambda: api.export(model_dir, output_dir, quantize=quantize == "int8"))
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
        files = _run(lambda: fetch_corpus(download, data_dir))
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


@app.command("config")
def show_config(
    config: Annotated[Optional[str], typer.Argument(help="preset or file to resolve; default: all defaults")] = None,
    set_: Override = [],
) -> None:
    """Print a resolved config as YAML (start your own file from it)."""
    from korpair import api

    cfg = _run(lambda: api.load_config(config, set_))
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


def _run(call):
    _quiet_libraries()
    try:
        return call()
    except TrainingInterrupted as err:
        console.print(f"[bold yellow]stopped:[/bold yellow] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except KorpairError as err:
        _fail(str(err))
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
