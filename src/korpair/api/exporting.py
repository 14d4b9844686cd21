"""``export`` (one format) and ``export_backends`` (every backend, timed here, the fastest recorded).

Example::

    korpair.api.export("runs/demo/model", quantize=True)               # runs/demo/model/onnx-int8
    korpair.api.export("runs/demo/model", format="openvino")           # runs/demo/model/openvino
    record = korpair.api.export_backends("runs/demo/model")           # all of them, and backends.json
    record["fastest"]                                                  # what predict, evaluate and serve now use
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from korpair.api.checks import known_encoding, readable_file
from korpair.corpora import read_pairs
from korpair.errors import ConfigError, CorpusError
from korpair.inference.backends import MIN_AGREEMENT
from korpair.inference.backends import export_backends as _export_backends
from korpair.inference.onnx import export_onnx
from korpair.inference.own_pairs import own_pairs
from korpair.model_folder import check_model_folder
from korpair.quiet import quiet

log = logging.getLogger(__name__)
FORMATS = ("onnx", "openvino")
PROBE_PAIRS = 256  # enough for a stable rate and a 1-in-100 agreement check, a few seconds per backend


def export(model_dir: str | Path, output_dir: str | Path | None = None, quantize: bool = False, *,
           format: str = "onnx", data: str | Path | None = None, verbose: bool = False) -> Path:
    """Export a model folder to ONNX or OpenVINO (optionally int8) for ``predict``, ``evaluate`` and ``serve``.

    OpenVINO's int8 is static: calibrated on pairs from ``data`` (a file of
    pairs) or else the model's own validation split.
    """
    if format not in FORMATS:
        raise ConfigError(f"format={format!r}: expected one of {', '.join(FORMATS)}")
    with quiet(verbose):
        if format == "onnx":
            return export_onnx(model_dir, output_dir, quantize=quantize)
        from korpair.inference.openvino import export_openvino

        pairs = probe_pairs(model_dir, data) if quantize else None
        return export_openvino(model_dir, output_dir, quantize=quantize, calibration_pairs=pairs)


def export_backends(model_dir: str | Path, data: str | Path | None = None, *, backends: Sequence[str] | None = None,
                    min_agreement: float = MIN_AGREEMENT, text_a_column: str | None = None,
                    text_b_column: str | None = None, encoding: str = "utf-8",
                    progress: Callable[[str], None] | None = None, verbose: bool = False) -> dict:
    """Export every backend this installation can run, time each on this machine, record the fastest.

    The pairs come from ``data`` (a CSV/TSV/JSONL/JSON file of pairs, labels
    not needed) or else the model's own validation split; the first 256 are
    used to time each backend at batch 64, to measure its agreement with
    PyTorch fp32, and to calibrate the int8 ones. ``MODEL/backends.json``
    records it all, with the fastest backend whose agreement is at least
    ``min_agreement``: ``Predictor.from_pretrained(MODEL)`` and the
    ``predict``, ``evaluate`` and ``serve`` commands use that one from then on.
    """
    if not 0 < min_agreement <= 1:
        raise ConfigError(f"min_agreement={min_agreement}: expected a share in (0, 1]")
    with quiet(verbose):
        check_model_folder(model_dir)
        pairs = probe_pairs(model_dir, data, text_a_column=text_a_column, text_b_column=text_b_column,
                            encoding=encoding)
        return _export_backends(model_dir, pairs, backends=backends, min_agreement=min_agreement,
                                progress=progress)


def probe_pairs(model_dir: str | Path, data: str | Path | None = None, *, text_a_column: str | None = None,
                text_b_column: str | None = None, encoding: str = "utf-8",
                limit: int = PROBE_PAIRS) -> list[tuple[str, str]]:
    """Up to ``limit`` real pairs for timing and calibration: from ``data``, or the model's validation split."""
    if data is not None:
        known_encoding(encoding)
        fmt = readable_file(data, "auto")
        pairs = read_pairs(data, fmt=fmt, text_a_column=text_a_column, text_b_column=text_b_column,
                           require_label=False, encoding=encoding, limit=limit)
    else:
        pairs = own_pairs(model_dir, limit, ask="pass data= (a file of premise/hypothesis pairs)")
    if not pairs:
        raise CorpusError(f"{data or model_dir}: no pairs to time and calibrate the backends on")
    return [(p.premise, p.hypothesis) for p in pairs]
