"""Which precision and padding suit the hardware: the one place these rules live.

Example::

    resolve_precision("auto")      # ('bf16-mixed', 'the CPU has AVX512_BF16') on such a CPU
"""

from __future__ import annotations

import torch


def resolve_precision(precision: str, accelerator: str = "auto") -> tuple[str, str]:
    """Lightning's precision for ``trainer.precision``, and why, where it is ``auto``.

    ``auto`` is bf16 autocast where the hardware computes in bf16: there it is
    about 1.5-2x faster at the same loss (benchmarks/results/train.md). Where bf16
    would be emulated (a CPU without AVX512-BF16 or AMX, an older GPU), or on
    Apple's MPS, it stays fp32.
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
