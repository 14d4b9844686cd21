"""Helpers the benchmarks share: machine facts, the matmul peak, worker processes, summaries, tables.

>>> peak = matmul_peak_gflops(torch.bfloat16)          # GFLOP/s of a square matmul loop
>>> result = run_worker(Path(__file__), {"task": "encode"}, timeout_s=600)
>>> spread([1.9, 2.1, 2.0])
{'min': 1.9, 'median': 2.0, 'max': 2.1}
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

RESULT_PREFIX = "BENCH-RESULT "


def cpu_name() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        return names[0] if names else platform.processor() or "unknown"
    except OSError:
        return platform.processor() or "unknown"


TRAINING_PACKAGES = ("torch", "transformers", "lightning", "datasets", "accelerate", "tokenizers", "onnxruntime")


def machine_info(packages: Sequence[str] = TRAINING_PACKAGES) -> dict:
    """CPU, the matmul-relevant ISA extensions, cores, memory and the versions of ``packages``.

    ``versions`` is also spread over the top level (``info["torch"]``), for the reports' one-liners.
    """
    import torch

    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        mem_kib = 0
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "isa": {k: bool(caps.get(k)) for k in ("avx512_f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")},
        "versions": versions,
        **versions,
    }


def load_average() -> float:
    """The 1-minute load average: above the core count, other processes competed for the CPU."""
    return round(os.getloadavg()[0], 2)


def cpu_ticks() -> tuple[int, int]:
    """(busy clock ticks of the whole machine, clock ticks of this process), from /proc.

    Between two readings, the machine's busy ticks minus this process's are what other
    processes took: ``others_cpu_share`` turns that into a fraction of the cores.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])  # utime + stime


def others_cpu_share(start: tuple[int, int], end: tuple[int, int], seconds: float) -> float:
    """Fraction of the machine's cores that other processes used between two ``cpu_ticks`` readings."""
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, others / (seconds * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)))


def wait_for_quiet(max_others: float, max_wait_s: float, sample_s: float = 1.0) -> float:
    """Sleep until other processes use at most ``max_others`` of the cores (or ``max_wait_s`` passed).

    Returns the seconds waited. On 2 cores a third busy process does not cost a
    third of the speed: torch's OpenMP threads wait for each other and a step
    can take 10x longer, so timed runs start when the machine is quiet.
    """
    start = time.perf_counter()
    while True:
        before, t0 = cpu_ticks(), time.perf_counter()
        time.sleep(sample_s)
        if others_cpu_share(before, cpu_ticks(), time.perf_counter() - t0) <= max_others:
            break
        if time.perf_counter() - start >= max_wait_s:
            break
    return time.perf_counter() - start


def matmul_peak_gflops(dtype, seconds: float = 1.5, sizes: Sequence[int] = (1024, 2048)) -> float:
    """The best GFLOP/s of an ``n x n @ n x n`` loop over ``sizes``: the machine's practical matmul peak."""
    import torch

    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        for _ in range(2):  # warm-up: oneDNN/MKL pick and cache their kernels
            a @ b
        start, count = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - start) < seconds:
            a @ b
            count += 1
        best = max(best, 2 * n**3 * count / elapsed / 1e9)
    return round(best, 1)


def run_worker(script: Path, spec: dict, timeout_s: float, env: dict | None = None) -> dict:
    """Run ``script --worker SPEC`` in a fresh process and return the JSON it prints.

    A fresh process per measurement: peak RSS is that measurement's own, and no
    allocator, thread-pool or compiled-kernel state leaks from one system to the next.
    """
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **(env or {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {spec.get('task')} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def emit_result(result: dict) -> None:
    """What a worker prints last: one line the parent picks out of any other output."""
    result["peak_rss_mib"] = peak_rss_mib()
    result["load_1min"] = load_average()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def spread(values: Sequence[float], digits: int = 3) -> dict:
    """min, median and max of repeated measurements."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"min": None, "median": None, "max": None}
    return {"min": round(min(vals), digits), "median": round(statistics.median(vals), digits),
            "max": round(max(vals), digits)}


def fmt_spread(s: dict, unit: str = "") -> str:
    """``1.9 / 2.0 / 2.1`` (min / median / max), or the single value when there was one run."""
    if s["median"] is None:
        return "n/a"
    if s["min"] == s["max"]:
        return f"{s['median']}{unit}"
    return f"{s['min']} / **{s['median']}** / {s['max']}{unit}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column, ``l`` or ``r``."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def stop_process(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout_s`` (a server under test)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
