"""Third-party chatter while korpair loads, exports and quantizes a model: shown only when korpair's own
logger asks for detail (``korpair -v``, or ``logging.getLogger("korpair").setLevel(logging.DEBUG)``).

transformers draws a "Loading weights" bar for every model it loads; ONNX Runtime's optimizer warns about
embedding sizes it fuses by heuristics, and its quantizer advises "pre-processing before quantization" on
every export (korpair's export has already run ONNX Runtime's transformer optimizer on the graph). None of
it is for the user to act on. Warnings that are (missing weights, failed loads) still come through.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from korpair.quiet import verbose_requested

QUANTIZER_ADVICE = "Please consider to run pre-processing before quantization"


def verbose() -> bool:
    """Whether the call asked for the libraries' own output (``verbose=True``, ``korpair -v``) or korpair's logger
    shows debug detail."""
    return verbose_requested() or logging.getLogger("korpair").isEnabledFor(logging.DEBUG)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No transformers progress bars inside the block (hub downloads keep theirs)."""
    if verbose():
        yield
        return
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    bars_on, hub_off = hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # this switches the hub's bars off too
    if not hub_off:
        hub.enable_progress_bars()
    try:
        yield
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
            if hub_off:
                hub.disable_progress_bars()


class _Chatter(logging.Filter):
    """The quantizer's advice, and anything below ERROR from ONNX Runtime's optimizer, which logs under its
    modules' bare names (it puts its folder on ``sys.path``), so it is told by the file that logs."""

    optimizer = os.sep + os.path.join("onnxruntime", "transformers") + os.sep

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and self.optimizer in record.pathname:
            return False
        return not record.getMessage().startswith(QUANTIZER_ADVICE)


@contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """ONNX Runtime's optimizer below ERROR, and its quantizer without the pre-processing advice.

    Both reach the root logger's handlers; the quantizer logs with
    ``logging.warning``, which would also configure the root logger for the
    whole process when it has no handler yet, so a stand-in for Python's
    last-resort handler (warnings to stderr) holds its place for the block,
    verbose or not.
    """
    root, chatter = logging.getLogger(), _Chatter()
    stand_in = None if root.handlers else logging.StreamHandler(sys.stderr)
    if stand_in is not None:
        stand_in.setLevel(logging.WARNING)
        root.addHandler(stand_in)
    handlers = [] if verbose() else list(root.handlers)
    for handler in handlers:
        handler.addFilter(chatter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(chatter)
        if stand_in is not None:
            root.removeHandler(stand_in)
