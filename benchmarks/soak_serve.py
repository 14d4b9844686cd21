"""Soak test: a real ``korpair`` server process under steady load for minutes; does it stay healthy and flat?

Builds the tests' tiny BERT offline, starts ``korpair.serve.run_server`` in its own process on a
free loopback port (127.0.0.1 only), and runs a closed loop of ``--concurrency`` clients until
``--duration`` has passed; then it stops the server and itself. Every few seconds it samples the
server's resident memory (RSS), threads and open file descriptors from /proc.

Requests: 80% one pair, 15% a list of 2-8 pairs, 5% invalid (a blank premise: the answer must be 422).
An error is any other status, a transport failure or a timeout. Memory is "stable" when the RSS
trend over the second half (a least-squares line; the first half includes allocator warm-up)
grows less than the noise: max(1% of the starting RSS, 3 x the residual spread around the line).

Writes benchmarks/results/soak.json and soak.md; exits 1 on any error or on memory growth.

    python benchmarks/soak_serve.py                    # 5 minutes at concurrency 16
    python benchmarks/soak_serve.py --duration 20      # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"  # loopback only, on purpose: no flag to change it
LABELS = ("entailment", "neutral", "contradiction")
SENTENCES = [
    "민수는 어제 공원에서 자전거를 탔다", "지영은 집에 있지 않았다", "비가 많이 온다", "날씨가 맑다",
    "할머니가 시장에서 사과를 샀다", "아이들이 운동장에서 축구를 한다", "회의는 오후 세 시에 끝났다",
    "선생님은 학생들에게 숙제를 내 주셨다", "가게 문이 닫혀 있었다", "커피가 너무 뜨겁다",
]
EXTRAS = ["", "", "", " 😀", " \"정말?\"", ", 그리고", " ㅋㅋ", " 👨‍👩‍👧"]
MIB = 1024 * 1024


def build_tiny_model(folder: Path) -> Path:
    """The tests' tiny classifier: a random 2-layer BERT (hidden 32) with a WordPiece vocabulary of 300."""
    import torch

    from korpair.config import ModelConfig
    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer
    from korpair.types import LabelMap

    torch.manual_seed(0)
    cfg = ModelConfig(from_scratch=True, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=64)
    tokenizer, model = build_model_and_tokenizer(cfg, LabelMap(LABELS), SENTENCES * 5, 64)
    return export_model(model, tokenizer, folder)


def start_server(model_dir: Path, torch_threads: int, log_file: Path) -> tuple[subprocess.Popen, str]:
    code = "import sys; from korpair.serve import run_server; run_server(sys.argv[1], host=sys.argv[2], port=0)"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch_threads)}
    # Everything to a file: a pipe nobody drains would fill with access-log lines and stall the server.
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, str(model_dir), HOST], stdout=log,
                                stderr=subprocess.STDOUT, text=True, env=env)
    match = None
    for _ in range(1200):  # run_server prints its URL once it listens
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", log_file.read_text())
        if match or proc.poll() is not None:
            break
        time.sleep(0.1)
    if not match:
        stop_server(proc)
        raise RuntimeError(f"server did not start:\n{log_file.read_text()[-2000:]}")
    url = match.group(1)
    for _ in range(600):
        try:
            if httpx.get(url + "health", timeout=1).json()["status"] == "ok":
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    stop_server(proc)
    raise RuntimeError(f"server at {url} never became healthy")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # what Ctrl+C does: uvicorn finishes and exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sample_process(pid: int) -> dict:
    """RSS, threads and open files of ``pid``, from /proc (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+)", status, re.M).group(1))  # noqa: E731
    return {"rss_mib": field("VmRSS") / 1024, "threads": field("Threads"),
            "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


def make_request(rng: random.Random) -> tuple[dict, int]:
    """A request body and the status it must get."""
    def text() -> str:
        n = rng.randint(1, 3)
        return " ".join(rng.choice(SENTENCES) for _ in range(n)) + rng.choice(EXTRAS)

    roll = rng.random()
    if roll < 0.05:
        return {"premise": " \u3000", "hypothesis": text()}, 422
    if roll < 0.20:
        return {"pairs": [{"premise": text(), "hypothesis": text()} for _ in range(rng.randint(2, 8))]}, 200
    return {"premise": text(), "hypothesis": text()}, 200


async def soak(url: str, pid: int, args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    samples: list[dict] = []
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=args.request_timeout) as client:

        async def one(rng: random.Random) -> None:
            body, expected = make_request(rng)
            start = time.perf_counter()
            try:
                response = await client.post("predict", json=body)
            except httpx.HTTPError as err:
                errors.append(f"{type(err).__name__}: {err}")
                return
            latencies.append(time.perf_counter() - start)
            if response.status_code != expected:
                errors.append(f"{response.status_code} (expected {expected}): {response.text[:200]}")
            elif expected == 200:
                answer = response.json()
                for p in answer.get("predictions", [answer]):
                    if p["label"] not in LABELS or abs(sum(p["scores"].values()) - 1) > 1e-4:
                        errors.append(f"bad answer: {answer}")

        warm = random.Random(-1)
        await asyncio.gather(*(one(warm) for _ in range(2 * args.concurrency)))  # connections, first batches
        latencies.clear()
        if errors:
            raise RuntimeError(f"errors during warm-up: {errors[:3]}")

        start = time.perf_counter()
        deadline = start + args.duration

        async def client_loop(k: int) -> None:
            rng = random.Random(k)
            while time.perf_counter() < deadline:
                await one(rng)

        async def sampler() -> None:
            last_t, last_done = start, 0
            while True:
                now, done = time.perf_counter(), len(latencies)
                rate = round((done - last_done) / (now - last_t), 1) if now > last_t else None
                samples.append({"t_s": round(now - start, 2), **sample_process(pid), "requests": done,
                                "requests_per_s": rate, "load_1min": round(os.getloadavg()[0], 2)})
                last_t, last_done = now, done
                if now >= deadline:
                    return
                await asyncio.sleep(min(args.sample_s, max(0.0, deadline - now)))

        await asyncio.gather(sampler(), *(client_loop(k) for k in range(args.concurrency)))
        elapsed = time.perf_counter() - start
        health = (await client.get("health")).json()
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "error_examples": errors[:10],
            "seconds": round(elapsed, 1), "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2), "health_after": health, "memory": analyse_memory(samples),
            "samples": samples}


def analyse_memory(samples: list[dict]) -> dict:
    t = np.array([s["t_s"] for s in samples])
    rss = np.array([s["rss_mib"] for s in samples])
    half = t >= t[-1] / 2
    slope, intercept = np.polyfit(t[half], rss[half], 1)  # MiB per second
    residual_sd = float(np.std(rss[half] - (slope * t[half] + intercept)))
    second_half_s = float(t[half][-1] - t[half][0])
    trend_growth = float(slope * second_half_s)
    noise = max(0.01 * rss[0], 3 * residual_sd)
    return {"rss_start_mib": round(float(rss[0]), 1), "rss_end_mib": round(float(rss[-1]), 1),
            "rss_peak_mib": round(float(rss.max()), 1), "growth_mib": round(float(rss[-1] - rss[0]), 1),
            "second_half_slope_mib_per_min": round(float(slope * 60), 3),
            "second_half_trend_growth_mib": round(trend_growth, 2), "noise_mib": round(float(noise), 2),
            "stable": bool(trend_growth <= noise),
            "threads_start_end": [samples[0]["threads"], samples[-1]["threads"]],
            "open_fds_start_end": [samples[0]["open_fds"], samples[-1]["open_fds"]]}


def write_report(info: dict, result: dict, args: argparse.Namespace, load_before: float) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"duration_s": args.duration, "concurrency": args.concurrency, "sample_every_s": args.sample_s,
                "server_torch_threads": args.torch_threads, "host": HOST,
                "limits": "ServeLimits() defaults: batching on, max_batch_size=32, max_wait_ms=5",
                "requests": "80% one pair, 15% 2-8 pairs, 5% blank premise (expects 422)",
                "client": "httpx.AsyncClient, closed loop, in this process; the server in its own process"}
    (RESULTS / "soak.json").write_text(json.dumps({"machine": info, "settings": settings, "load_1min_before":
                                                   load_before, "result": result}, indent=2, ensure_ascii=False)
                                       + "\n", encoding="utf-8")
    m = result["memory"]
    loads = [s["load_1min"] for s in result["samples"]]
    table = [
        "| duration | concurrency | requests | errors | req/s | p50 ms | p99 ms | max ms | RSS start MiB "
        "| RSS end MiB | growth MiB | 2nd-half slope MiB/min | memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {result['seconds']} s | {args.concurrency} | {result['requests']} | {result['errors']} | "
        f"{result['requests_per_s']} | {result['p50_ms']} | {result['p99_ms']} | {result['max_ms']} | "
        f"{m['rss_start_mib']} | {m['rss_end_mib']} | {m['growth_mib']:+} | {m['second_half_slope_mib_per_min']:+} | "
        f"{'stable' if m['stable'] else 'GROWING'} |",
    ]
    lines = [
        "# korpair serve soak", "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; Python {info['python']}, "
        f"torch {info['torch']}, transformers {info['transformers']}, fastapi {info['fastapi']}, "
        f"uvicorn {info['uvicorn']}.", "",
        f"A `run_server` process on {HOST} (loopback only) serving the tests' tiny BERT (2x32, random weights), "
        f"torch threads {args.torch_threads}, default limits (batching on). {args.concurrency} clients in a "
        "closed loop; 80% one pair, 15% 2-8 pairs, 5% a blank premise that must get 422. An error is any "
        "other status, a bad answer, a transport failure or a timeout.", "",
        *table, "",
        f"Memory: RSS sampled every {args.sample_s} s. Stable means the least-squares trend over the second "
        f"half grew {m['second_half_trend_growth_mib']:+} MiB, within the noise of {m['noise_mib']} MiB "
        "(max of 1% of the starting RSS and 3x the residual spread). "
        f"Peak RSS {m['rss_peak_mib']} MiB; threads {m['threads_start_end'][0]} -> {m['threads_start_end'][1]}; "
        f"open files {m['open_fds_start_end'][0]} -> {m['open_fds_start_end'][1]}.", "",
        f"Machine load (1-minute average, other jobs included): {load_before} before, "
        f"{min(loads)}-{max(loads)} during; above {info['cores']} the CPU was shared and latencies are pessimistic.",
        "", f"Health after the run: {json.dumps(result['health_after'], ensure_ascii=False)}",
    ]
    if result["error_examples"]:
        lines += ["", "Errors (first 10):", *[f"- `{e}`" for e in result["error_examples"]]]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default: 5 minutes)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in the closed loop")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds before a request is an error")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="korpair-soak-") as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        proc, url = start_server(model_dir, args.torch_threads, Path(tmp) / "server.log")
        try:
            # The soak stops itself: at the deadline, or at the latest 2 minutes after it.
            result = asyncio.run(asyncio.wait_for(soak(url, proc.pid, args), timeout=args.duration + 120))
        finally:
            stop_server(proc)
    report = write_report(machine_info(("torch", "transformers", "fastapi", "uvicorn")), result, args, load_before)
    print(report)
    return 0 if result["errors"] == 0 and result["memory"]["stable"] else 1


if __name__ == "__main__":
    sys.exit(main())
