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

import torch

from korpair.errors import ConfigError
from korpair.types import INFERENCE_PRECISIONS

# What each inference precision computes in: None is plain fp32 (exact scores); the others run the
# forward pass under autocast, about 2x the pairs/s where the hardware computes in that type.
_AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
# Tensor cores run matrix products fastest on shapes in multiples of 8 (fp16/bf16).
GPU_PAD_MULTIPLE = 8


def resolve_precision(precision: str, accelerator: str = "auto") -> tuple[str, str]:
    """Lightning's precision for ``trainer.precision``, and why, where it is ``auto``.

    ``auto`` is bf16 autocast where the hardware computes in bf16: there it is
    about 1.5-2x faster at the same loss (benchmarks/results/train.md). Where bf16
    would be emulated (a CPU without AVX512-BF16 or AMX, an older GPU), or on
    Apple's MPS, it stays fp32.

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
        if native:
            return "bf16-mixed", f"the CPU has {native[0].upper()}"
        return "32-true", "the CPU has no native bf16 (no AVX512-BF16 or AMX), so bf16 would be slower"
    return "32-true", f"bf16 autocast is not used on {device}"


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
