"""What every ``korpair`` command shares: the app, its two consoles, logging, the ``-v`` switch, and how a
call into ``korpair.api`` ends (a ``KorpairError`` in the command's flags, exit 2).

stdout carries only what a command produces (a table, JSON, predictions with
``-o -``); logs, progress and errors go to stderr.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from korpair.cli.options import LogFlags, command_flags, in_flags
from korpair.errors import KorpairError, TrainingInterrupted
from korpair.quiet import LIGHTNING_LOGGERS
from korpair.types import BACKEND_NAMES, INFERENCE_PRECISIONS
from korpair.version import __version__

app = typer.Typer(
    name="korpair", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Fine-tune, evaluate and serve Korean sentence-pair models: NLI, similarity (STS) and paraphrase.",
)
console = Console(stderr=True)
out = Console()
_LOG_FLAGS = LogFlags()  # set to the running command's flags by run
_state = {"verbose": False}


def verbose() -> bool:
    """Whether ``korpair -v`` asked for the libraries' own logs and warnings."""
    return _state["verbose"]


def _setup_logging(verbose: bool) -> None:
    _state["verbose"] = verbose
    logging.basicConfig(level=logging.WARNING, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    logging.getLogger().handlers[0].addFilter(_LOG_FLAGS)
    logging.getLogger("korpair").setLevel(logging.DEBUG if verbose else logging.INFO)  # DEBUG also lets pooch speak
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def _version(value: bool) -> None:
    if value:
        out.print(f"korpair {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="also show the libraries' own logs, progress bars and warnings "
                                "(Lightning, transformers, onnxruntime)")] = False,
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
Calibrated = Annotated[bool, typer.Option(
    help="apply the calibration fitted at training (the model folder's temperature); --no-calibration gives the "
         "model's raw probabilities")]
BackendName = Enum("BackendName", {name: name for name in BACKEND_NAMES}, type=str)
Backend = Annotated[BackendName, typer.Option(
    help="what runs the model: auto is the fastest backend `korpair export` measured for the folder (PyTorch "
         "where it has not been exported, or with --precision bf16 or 16); or one exported backend by name")]
DEFAULT_PRECISION = InferencePrecision("32" if "32" in INFERENCE_PRECISIONS else INFERENCE_PRECISIONS[0])


def _route_library_logs() -> None:
    """Lightning's log lines through the one handler of the command line, not through its own handler as well
    (with ``-v`` each line would show twice). Lightning adds its handler when imported: the command has imported
    ``korpair.api`` (and so Lightning) by now."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def run(call: Callable, verb: str):
    """Call the API; a ``KorpairError`` is printed in ``korpair VERB``'s flags and exits 2."""
    _route_library_logs()
    flags = command_flags(typer.main.get_command(app).commands[verb])
    _LOG_FLAGS.flags = flags
    try:
        return call()
    except TrainingInterrupted as err:
        console.print(f"[bold yellow]stopped:[/bold yellow] {escape(in_flags(str(err), flags))}", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(130) from None
    except KorpairError as err:
        fail(in_flags(str(err), flags))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None


def fail(message: str) -> None:
    # escape: file contents in a message (e.g. "[/b]") must not be read as console markup
    console.print(f"[bold red]error:[/bold red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(2)
