"""Which runtime serves a model folder: every backend exported, each timed here, the fastest recorded.

A backend is a way to run the same model: PyTorch in fp32 or under bf16
autocast, ONNX Runtime in fp32 or int8, OpenVINO in fp32 (bf16 where the CPU
computes in it faster) or static int8. ``export_backends`` exports each one this
installation can make into the model folder (``MODEL/onnx``, ``MODEL/onnx-int8``,
``MODEL/openvino``, ``MODEL/openvino-int8``), times each on the model's own
validation pairs at batch 64, measures how often it gives PyTorch fp32's label
(or how closely its scores rank), and writes ``MODEL/backends.json``: the
figures and the fastest backend whose agreement is at least ``min_agreement``.
A backend below that bar is never chosen, and the record says so.

``resolve_backend`` is what ``Predictor.from_pretrained(MODEL)`` asks: with
``backend="auto"`` the recorded choice where there is a record, else PyTorch
as asked; a named backend is used as named. The probe measures the machine it
runs on; a record made on another CPU is still used (the ranking of int8 and
fp32 rarely changes between x86 CPUs), with a warning to export again there.

Example::

    record = export_backends("runs/demo/model", pairs)   # writes runs/demo/model/backends.json
    record["fastest"]                                   # e.g. 'onnx-int8'
    Predictor.from_pretrained("runs/demo/model")        # now runs on ONNX Runtime, int8
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from korpair.atomic import write_text
from korpair.errors import ConfigError, KorpairError, ModelFolderError
from korpair.types import BACKEND_NAMES

log = logging.getLogger(__name__)

RECORD_FILE = "backends.json"
RECORD_VERSION = 1
MIN_AGREEMENT = 0.99  # share of the probe pairs given PyTorch fp32's label; ~2 in 256 may differ


@dataclass(frozen=True)
class Backend:
    """One way to run a model folder: where its files are (relative to the folder) and in what precision."""

    name: str
    folder: str  # "." is the PyTorch folder itself
    precision: str  # what the Predictor is asked for; exported models run as exported ("32")
    runtime: str  # the package it needs: torch, onnxruntime, openvino
    quantize: bool = False


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", ".", "32", "torch"),
    Backend("torch-bf16", ".", "bf16", "torch"),
    Backend("onnx", "onnx", "32", "onnxruntime"),
    Backend("onnx-int8", "onnx-int8", "32", "onnxruntime", quantize=True),
    Backend("openvino", "openvino", "32", "openvino"),
    Backend("openvino-int8", "openvino-int8", "32", "openvino", quantize=True),
)}
BACKEND_CHOICES = BACKEND_NAMES  # korpair.types keeps the names, so the CLI lists them without importing torch


def machine() -> dict:
    """What the probe's figures depend on: the CPU, its cores and whether it computes in bf16."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": name, "cores": torch.get_num_threads(), "bf16": cpu_has_bf16()}


def cpu_has_bf16() -> bool:
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def runtime_installed(runtime: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(runtime) is not None


def exportable() -> list[Backend]:
    """The backends this installation can run: PyTorch always (bf16 only where the CPU has it), the rest with
    their extras (``korpair[onnx]``, ``korpair[openvino]``)."""
    found = []
    for b in BACKENDS.values():
        if b.name == "torch-bf16" and not cpu_has_bf16():
            continue
        if b.runtime == "onnxruntime" and not (runtime_installed("onnxruntime") and runtime_installed("onnx")):
            continue
        if b.runtime == "openvino" and not (runtime_installed("openvino") and runtime_installed("nncf")):
            continue
        found.append(b)
    return found


def read_record(model_dir: str | Path) -> dict | None:
    """``MODEL/backends.json`` as written by ``export_backends``, or ``None`` where there is none."""
    path = Path(model_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        fastest = record["fastest"]
        if fastest not in BACKENDS or not isinstance(record["backends"], dict):
            raise ValueError(f"unknown backend {fastest!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelFolderError(f"{path}: not a backend record korpair can read ({err}); delete it, or export "
                               "the model again to measure the backends anew") from None
    return record


def check_backend(backend: str) -> None:
    if backend not in BACKEND_CHOICES:
        raise ConfigError(f"backend {backend!r}: expected one of {', '.join(BACKEND_CHOICES)}")


def resolve_backend(model_dir: str | Path, backend: str = "auto", precision: str = "32") -> tuple[Path, str, str]:
    """The folder and precision to load for ``backend``, and the backend's name (``"torch"`` where none applies).

    ``auto`` takes the recorded fastest backend, unless ``precision`` asks for
    something other than fp32 (an explicit precision means PyTorch). A named
    backend must have been exported into ``model_dir``.
    """
    path = Path(model_dir)
    check_backend(backend)
    if backend == "auto":
        record = read_record(path) if path.is_dir() else None
        if record is None or precision != "32":
            return path, precision, "torch"
        if record.get("machine", {}).get("cpu") != machine()["cpu"]:
            log.warning("%s: the backends were timed on another CPU (%s); export the model again here to "
                        "measure them on this one", path / RECORD_FILE, record.get("machine", {}).get("cpu"))
        backend = record["fastest"]
    chosen = BACKENDS[backend]
    if chosen.precision != "32" and precision != "32" and precision != chosen.precision:
        raise ConfigError(f"backend {backend!r} runs in precision {chosen.precision}, not {precision!r}")
    folder = path / chosen.folder
    if chosen.folder != "." and not folder.is_dir():
        raise ModelFolderError(f"{folder}: backend {backend!r} has not been exported for {path}; export it "
                               f"first (korpair export)")
    return folder, chosen.precision if chosen.precision != "32" else precision, backend


def export_backends(model_dir: str | Path, pairs: Sequence[tuple[str, str]], *,
                    backends: Sequence[str] | None = None, min_agreement: float = MIN_AGREEMENT,
                    batch_size: int = 64, seconds: float = 2.0,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Export each backend into ``model_dir``, time it and its agreement on ``pairs``, and record the fastest.

    ``backends`` defaults to every one this installation can make
    (``exportable``). ``pairs`` are real pairs of the model's task (its
    validation split): the timing runs over them at ``batch_size`` for at
    least ``seconds``, and the int8 exports are calibrated on them. Returns
    the record written to ``MODEL/backends.json``.
    """
    from korpair.inference.onnx import agreement
    from korpair.inference.predictor import Predictor

    model_dir = Path(model_dir)
    names = list(backends) if backends is not None else [b.name for b in exportable()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ConfigError(f"backends {unknown}: expected some of {', '.join(BACKENDS)}")
    if "torch" not in names:
        names.insert(0, "torch")  # the reference every other backend is held to
    pairs = [tuple(p) for p in pairs]
    if not pairs:
        raise KorpairError("no pairs to time the backends on")
    say = progress or (lambda message: log.info("%s", message))
    reference = Predictor.from_pretrained(model_dir, calibrated=False, backend="torch")
    results: dict[str, dict] = {}
    for name in names:
        b = BACKENDS[name]
        if b.folder != ".":
            say(f"exporting {name}")
            _export(model_dir, b, pairs)
        say(f"timing {name}")
        predictor = reference if name == "torch" else Predictor.from_pretrained(
            model_dir, calibrated=False, backend=name)
        entry = {"folder": b.folder, "precision": b.precision, "pairs_per_s": round(_rate(
            predictor, pairs, batch_size, seconds), 2)}
        if name != "torch":
            entry.update({k: v for k, v in agreement(reference, predictor, pairs, batch_size).items()
                          if k not in ("task", "n")})
        entry["eligible"] = _eligible(entry, min_agreement)
        results[name] = entry
    fastest = max((n for n in results if results[n]["eligible"]), key=lambda n: results[n]["pairs_per_s"])
    record = {"format_version": RECORD_VERSION, "machine": machine(),
              "probe": {"pairs": len(pairs), "batch_size": batch_size, "min_agreement": min_agreement},
              "backends": results, "fastest": fastest}
    write_text(model_dir / RECORD_FILE, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    return record


def _export(model_dir: Path, b: Backend, pairs: Sequence[tuple[str, str]]) -> Path:
    if b.runtime == "onnxruntime":
        from korpair.inference.onnx import export_onnx

        return export_onnx(model_dir, model_dir / b.folder, quantize=b.quantize)
    from korpair.inference.openvino import export_openvino

    return export_openvino(model_dir, model_dir / b.folder, quantize=b.quantize, calibration_pairs=pairs)


def _rate(predictor, pairs: Sequence[tuple[str, str]], batch_size: int, seconds: float) -> float:
    """Pairs per second over whole passes through ``pairs``, after one warm-up batch."""
    predictor.predict_logits(pairs[:batch_size], batch_size)
    done, start = 0, time.perf_counter()
    while True:
        predictor.predict_logits(pairs, batch_size)
        done += len(pairs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _eligible(entry: dict, min_agreement: float) -> bool:
    if "label_agreement" in entry:
        return entry["label_agreement"] >= min_agreement
    if "spearman" in entry:
        return entry["spearman"] is not None and entry["spearman"] >= min_agreement
    return True  # the reference itself
