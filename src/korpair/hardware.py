"""Which precision, device and padding suit the hardware: the one place these rules live.

Training names (``korpair.types.TRAIN_PRECISIONS``) resolve to Lightning's
precision with ``resolve_precision``; inference names
(``korpair.types.INFERENCE_PRECISIONS``) map to an autocast dtype with
``autocast_dtype``; ``pad_multiple`` rounds batch lengths for tensor cores.

>>> autocast_dtype("bf16")
torch.bfloat16
>>> pad_multiple("auto", "cuda"), pad_multiple("auto", "cpu"), pad_multiple(16, "cpu")
(8, None, 16)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from korpair.errors import ConfigError
from korpair.sections import korpair_home
from korpair.types import INFERENCE_PRECISIONS

log = logging.getLogger(__name__)

# What each inference precision computes in: None is plain fp32 (exact scores); the others run the
# forward pass under autocast, about 2x the pairs/s where the hardware computes in that type.
_AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
# Tensor cores run matrix products fastest on shapes in multiples of 8 (fp16/bf16).
GPU_PAD_MULTIPLE = 8
# On a CPU with bf16 instructions, auto picks bf16 only where bf16 matrix products run at least this much faster
# than fp32 ones: the flag says the instructions exist, not that they are fast (2.2x on a 2-core AMD EPYC with
# AVX512-BF16, 0.6x on a 2-core Intel Xeon with AVX512-BF16, both without AMX).
CPU_BF16_MIN_SPEEDUP = 1.2


def resolve_precision(precision: str, accelerator: str = "auto") -> tuple[str, str]:
    """Lightning's precision for ``trainer.precision``, and why, where it is ``auto``.

    ``auto`` is bf16 autocast where the hardware computes in bf16 faster than in
    fp32: there it is about 1.5-2x faster at the same loss
    (benchmarks/results/train.md). Where bf16 would be emulated (a CPU without
    AVX512-BF16 or AMX, an older GPU), on Apple's MPS, or on a CPU whose bf16
    instructions are slower than its fp32 ones (``cpu_bf16_speedup``), it stays
    fp32.

    Example::

        resolve_precision("auto")      # ('bf16-mixed', 'the CPU has AVX512_BF16') on such a CPU
    """
    if precision != "auto":
        return ("32-true" if precision == "32" else precision), "as configured"
    device = "cpu" if accelerator == "cpu" else "gpu" if accelerator in ("gpu", "cuda") else accelerator
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if device == "gpu":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed", f"{torch.cuda.get_device_name()} computes in bf16"
        return "32-true", "this GPU has no native bf16"
    if device == "cpu":
        caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
        native = [k for k in ("amx_bf16", "avx512_bf16") if caps.get(k)]
        if not native:
            return "32-true", "the CPU has no native bf16 (no AVX512-BF16 or AMX), so bf16 would be slower"
        speedup = cpu_bf16_speedup()
        if speedup >= CPU_BF16_MIN_SPEEDUP:
            return "bf16-mixed", f"the CPU has {native[0].upper()}: bf16 matrix products {speedup:.1f}x fp32's speed"
        return "32-true", (f"the CPU has {native[0].upper()}, but its bf16 matrix products run at {speedup:.1f}x "
                           "fp32's speed")
    return "32-true", f"bf16 autocast is not used on {device}"


@functools.cache
def cpu_bf16_speedup() -> float:
    """How many times as fast this CPU multiplies BERT-sized matrices in bf16 as in fp32.

    Timed once a machine (about 0.3 s) and kept in ``korpair_home()/hardware/``,
    one small JSON file per CPU model and torch version: every later process,
    every DDP rank and every resumed run reads the same answer, so two runs of
    one config on one machine resolve ``auto`` alike. Where two processes time
    it at once, the first file written wins and both return it. Delete the file
    to time again.
    """
    key = f"{_cpu_model()} | {platform.machine()} | torch {torch.__version__}"
    path = korpair_home() / "hardware" / f"cpu-bf16-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    known = _read_speedup(path, key)
    if known is not None:
        return known
    measured = _time_bf16_speedup()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"cpu": key, "bf16_speedup": measured}) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # fails where another process was first: its answer is everyone's
        except FileExistsError:
            if _read_speedup(path, key, warn=False) is None:  # a damaged file, not a rival's: ours replaces it
                os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not keep the bf16 timing in %s: %s", path, exc)
        return measured
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    known = _read_speedup(path, key, warn=False)
    return measured if known is None else known


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _read_speedup(path: Path, key: str, warn: bool = True) -> float | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        speedup = float(record["bf16_speedup"])
        if record["cpu"] != key or not speedup > 0:
            raise ValueError("not this CPU's record")
        return speedup
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if warn:
            log.warning("%s: unreadable bf16 timing (%s); timing again", path, exc)
        return None


def _time_bf16_speedup() -> float:
    # Its own generator: a draw from the global one would shift every seeded run that resolves auto.
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(512, 768, generator=gen), torch.randn(768, 3072, generator=gen)
    pairs = {"fp32": (a, b), "bf16": (a.bfloat16(), b.bfloat16())}
    best = {name: float("inf") for name in pairs}
    with torch.inference_mode():
        for i in range(8):  # interleaved, so that a busy moment slows both alike; the first rounds warm up
            for name, (x, y) in pairs.items():
                start = time.perf_counter()
                x @ y
                if i >= 2:
                    best[name] = min(best[name], time.perf_counter() - start)
    return round(best["fp32"] / best["bf16"], 3)


def check_inference_precision(precision: str, *, onnx_model: str | None = None) -> None:
    """Raise a ``ConfigError`` unless ``precision`` is an inference precision the model can run in.

    ``onnx_model`` names an exported ONNX model: it runs as it was exported (fp32
    or int8 weights), so only ``"32"`` applies to it.

    >>> check_inference_precision("fp8")
    Traceback (most recent call last):
    korpair.errors.ConfigError: precision 'fp8': expected one of 32, bf16, 16
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected one of {', '.join(INFERENCE_PRECISIONS)}")
    if onnx_model is not None and precision != "32":
        raise ConfigError(f"{onnx_model}: an ONNX model runs as exported, so precision {precision!r} cannot "
                          "apply; load it with precision='32', or for a faster ONNX model export the PyTorch "
                          "folder with quantize=True (int8 weights)")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype an inference precision runs the forward pass in under autocast; ``None``: plain fp32."""
    check_inference_precision(precision)
    return _AUTOCAST_DTYPES[precision]


def resolve_device(device: str | None) -> torch.device:
    """The device to run a model on: ``device`` as given, else CUDA where PyTorch sees a GPU, else the CPU.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r}: expected cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: PyTorch sees no CUDA GPU here; use device='cpu' "
                          "(or leave device unset to pick a GPU where there is one)")
    return resolved


def pad_multiple(configured: int | str | None, device_type: str) -> int | None:
    """What to round each batch's length up to: ``configured``, or for ``"auto"`` 8 on CUDA and none elsewhere.

    On a GPU, multiples of 8 fit tensor cores; on a CPU they would only add padding.
    """
    if configured != "auto":
        return configured
    return GPU_PAD_MULTIPLE if device_type == "cuda" else None
