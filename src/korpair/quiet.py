"""Quiet by default: the libraries under korpair keep their chatter to themselves while korpair works.

Lightning's device lines ("GPU available", "TPU available") and its tips,
transformers' and huggingface_hub's progress bars ("Loading weights",
"Writing model shards") and notices, warnings raised inside those libraries
(deprecations such as ``LeafSpec``) and onnxruntime's quantization advice say
nothing a korpair user can act on. ``quiet()`` turns them off for the length
of a ``korpair.train`` / ``evaluate`` / ``predict`` / ``export`` / ``serve``
call and puts every library back as it was afterwards; ``quiet(verbose=True)``
changes nothing, so everything shows. korpair's own messages go through
``logging`` (the ``korpair`` logger) and are never silenced here: configure
logging (``logging.basicConfig(level=logging.INFO)``) to see its progress.

Nothing heavy is imported with this module; entering ``quiet()`` imports the
libraries it configures, as the call it wraps is about to.

Example::

    with quiet():
        korpair.api.train("sample")     # korpair's warnings only
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
# Warnings raised (or attributed) inside these packages are theirs to fix, not the korpair user's.
THIRD_PARTY = ("lightning", "lightning_fabric", "lightning_utilities", "pytorch_lightning", "torch", "torchmetrics",
               "transformers", "huggingface_hub", "tokenizers", "onnx", "onnxruntime", "onnxscript", "safetensors",
               "mlflow", "alembic", "sqlalchemy", "wandb", "optuna", "openvino", "nncf")
# Libraries that log their progress at INFO through handlers of their own (MLflow's "Creating initial MLflow
# database tables", alembic's migrations, Optuna's "Trial 3 finished").
CHATTY_LOGGERS = ("mlflow", "alembic", "optuna")
# Lightning warnings whose stack level attributes them to the caller's module.
THIRD_PARTY_MESSAGES = r".*(LeafSpec|isinstance\(treespec|does not have many workers)"
_verbose = contextvars.ContextVar("korpair_verbose", default=False)


def verbose_requested() -> bool:
    """Whether the call running now asked for the libraries' own output (``verbose=True``, ``korpair -v``)."""
    return _verbose.get()


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Third-party chatter off inside the block (unless ``verbose``); each library's settings restored after it."""
    if verbose:
        token = _verbose.set(True)
        try:
            yield
        finally:
            _verbose.reset(token)
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())  # restores the warning filters on the way out
        warnings.filterwarnings("ignore", module=rf"({'|'.join(THIRD_PARTY)})(\.|$)")
        warnings.filterwarnings("ignore", message=THIRD_PARTY_MESSAGES)
        stack.enter_context(_lightning_quiet())
        stack.enter_context(_hugging_face_quiet())
        stack.enter_context(_root_records_of_others_dropped())
        yield


def hush_imported(*names: str) -> None:
    """Inside ``quiet()``: put back at WARNING the loggers of a library that set its own level when it was just
    imported (MLflow and Optuna do, to INFO); ``quiet()`` restores them on the way out as it does the others."""
    if not verbose_requested():
        for name in names:
            logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _lightning_quiet() -> Iterator[None]:
    """Lightning's info lines (and the trackers' and Optuna's) off: their loggers at WARNING, as they were after."""
    if importlib.util.find_spec("lightning") is not None:
        # Lightning sets its logger's level when first imported: import it first, or that would undo ours.
        importlib.import_module("lightning.pytorch")
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS + CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _hugging_face_quiet() -> Iterator[None]:
    """transformers' notices and both libraries' progress bars off; their settings as they were after."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    verbosity, bars, hub_bars_off = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
                                     are_progress_bars_disabled())
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the hub's bars too
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        (disable_progress_bars if hub_bars_off else enable_progress_bars)()


class _NotFromThirdParty(logging.Filter):
    """Drops records that a library logged on the root logger (onnxruntime's ``logging.warning(...)``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        parts = Path(record.pathname).parts
        installed = [i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")]
        return not installed or parts[installed[-1] + 1:][:1] not in [(name,) for name in THIRD_PARTY]


@contextlib.contextmanager
def _root_records_of_others_dropped() -> Iterator[None]:
    root = logging.getLogger()
    drop = _NotFromThirdParty()
    # ``logging.warning()`` configures a root handler for good when there is none (basicConfig); Python's
    # last-resort handler stands in meanwhile: it prints what it would print anyway, warnings and errors.
    stand_in = [logging.lastResort] if not root.handlers and logging.lastResort is not None else []
    root.addFilter(drop)
    for handler in stand_in:
        root.addHandler(handler)
    try:
        yield
    finally:
        root.removeFilter(drop)
        for handler in stand_in:
            root.removeHandler(handler)
