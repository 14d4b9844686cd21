"""Soak test: a real ``korpair`` server process under steady load for minutes; does it stay healthy and flat?

Builds the tests' tiny BERT offline, starts ``korpair.serve.run_server`` in its own process on a
free loopback port (127.0.0.1 only), and runs a closed loop of ``--concurrency`` clients until
``--duration`` has passed; then it stops the server and itself. Every few seconds it samples the
server's resident memory (RSS), threads and open file descriptors from /proc.

Requests: 80% one pair, 15% a list of 2-8 pairs, 5% invalid (a blank premise: the answer must be 422).
An error is any other status, a transport failure or a timeout. Memory is "stable" when the RSS
trend over the second half (a least-squares line; the first half includes allocator warm-up)
grows less than the noise: max(1% of the starting RSS, 3 x the residual spread around the line).

Then the abuse run, on a second server: a random "small" BERT (4 layers, hidden 256: ~2 ms a pair, so that
work for nobody costs something) started with Linux's usual soft open-file limit of 1024 (``--server-nofile``).
``--abuse-concurrency`` (32) honest clients with the same request mix
for ``--abuse-duration`` seconds before any abuse, then ``--abuse-rounds`` (2) times: the same clients while
``--idle`` (1000) connections send ``GET /hea`` and nothing more (each reopened a second after the server
closes it) and ``--abandoned`` (100) requests of 64 pairs are sent and closed at once, then a quiet phase.
Goals (issue 11): the honest p99 under abuse within 2x of the p99 without, no 5xx but the 503s the server
sheds on purpose (they carry Retry-After), no errors, and an RSS that the second round does not grow.
This process holds all those connections: it raises its soft open-file limit (RLIMIT_NOFILE) up to the
hard one as needed, and says so in the report. Everything stays on 127.0.0.1.

Writes benchmarks/results/soak.json and soak.md; exits 1 on any error, on memory growth or on a missed goal.

    python benchmarks/soak_serve.py                    # 5 minutes at concurrency 16, then 5 x 60 s of abuse run
    python benchmarks/soak_serve.py --duration 20 --abuse-duration 10 --idle 200 --abandoned 20   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_ticks, machine_info, wait_for_quiet  # noqa: E402

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


# name: (hidden size, layers, heads, intermediate size). "small" costs ~2 ms a pair on one core of this machine
# (the tiny one ~0.15 ms): enough that the model's time matters, as a real model's does.
MODEL_SIZES = {"tiny": (32, 2, 2, 64), "small": (256, 4, 4, 1024)}


def build_tiny_model(folder: Path, size: str = "tiny") -> Path:
    """A random BERT with a WordPiece vocabulary of 300: "tiny" is the tests' (2 layers, hidden 32)."""
    import torch

    from korpair.config import ModelConfig
    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer
    from korpair.types import LabelMap

    torch.manual_seed(0)
    hidden, layers, heads, intermediate = MODEL_SIZES[size]
    cfg = ModelConfig(from_scratch=True, vocab_size=300, hidden_size=hidden, num_layers=layers, num_heads=heads,
                      intermediate_size=intermediate)
    tokenizer, model = build_model_and_tokenizer(cfg, LabelMap(LABELS), SENTENCES * 5, 64)
    return export_model(model, tokenizer, folder)


def start_server(model_dir: Path, torch_threads: int, log_file: Path,
                 nofile: int | None = None) -> tuple[subprocess.Popen, str]:
    """A ``run_server`` process on a free loopback port; ``nofile`` sets its soft open-file limit (hard kept)."""
    code = "import sys; from korpair.serve import run_server; run_server(sys.argv[1], host=sys.argv[2], port=0)"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch_threads)}

    def limit_files() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile if hard == resource.RLIM_INFINITY else min(nofile, hard),
                                                    hard))

    # Everything to a file: a pipe nobody drains would fill with access-log lines and stall the server.
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, str(model_dir), HOST], stdout=log,
                                stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=limit_files if nofile else None)
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


def process_ticks(pid: int) -> int:
    """Clock ticks (user + system) that process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def others_share(before: tuple, after: tuple, seconds: float) -> float:
    """Fraction of the machine's cores used by processes other than this one and the server (``pid`` above)."""
    (machine0, own0), server0 = before
    (machine1, own1), server1 = after
    others = (machine1 - machine0) - (own1 - own0) - (server1 - server0)
    return round(max(0.0, others / (seconds * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1))), 2)


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


async def run_load(url: str, pid: int, concurrency: int, duration: float, args: argparse.Namespace,
                   attack: Callable[[float], Awaitable[dict]] | None = None, seed: int = 0) -> dict:
    """``concurrency`` honest clients in a closed loop for ``duration`` seconds, with ``attack(deadline)`` beside them.

    A 503 that carries Retry-After is the server shedding load on purpose ("shed"), not an error.
    """
    latencies: list[float] = []
    errors: list[str] = []
    statuses: Counter = Counter()
    samples: list[dict] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
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
            statuses[response.status_code] += 1
            if response.status_code == 503 and "retry-after" in response.headers:
                return  # shed on purpose: counted in statuses, and in "shed_503" below
            if response.status_code != expected:
                errors.append(f"{response.status_code} (expected {expected}): {response.text[:200]}")
            elif expected == 200:
                answer = response.json()
                for p in answer.get("predictions", [answer]):
                    if p["label"] not in LABELS or abs(sum(p["scores"].values()) - 1) > 1e-4:
                        errors.append(f"bad answer: {answer}")

        warm = random.Random(-1 - seed)
        await asyncio.gather(*(one(warm) for _ in range(2 * concurrency)))  # connections, first batches
        latencies.clear()
        statuses.clear()
        if errors:
            raise RuntimeError(f"errors during warm-up: {errors[:3]}")

        start = time.perf_counter()
        deadline = start + duration
        ticks_before = cpu_ticks(), process_ticks(pid)

        async def client_loop(k: int) -> None:
            rng = random.Random(seed * 1000 + k)
            while time.perf_counter() < deadline:
                await one(rng)

        async def sampler() -> None:
            last_t, last_done = start, 0
            while True:
                now, done = time.perf_counter(), len(latencies)
                rate = round((done - last_done) / (now - last_t), 1) if now > last_t else None
                health = (await client.get("health")).json()
                samples.append({"t_s": round(now - start, 2), **sample_process(pid), "requests": done,
                                "requests_per_s": rate, "queue_depth": health["queue_depth"],
                                "load_1min": round(os.getloadavg()[0], 2)})
                last_t, last_done = now, done
                if now >= deadline:
                    return
                await asyncio.sleep(min(args.sample_s, max(0.0, deadline - now)))

        attacking = [attack(deadline)] if attack else []
        outcomes = await asyncio.gather(sampler(), *attacking, *(client_loop(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
        others = others_share(ticks_before, (cpu_ticks(), process_ticks(pid)), elapsed)
        health = (await client.get("health")).json()
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "error_examples": errors[:10],
            "shed_503": statuses.get(503, 0), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "seconds": round(elapsed, 1), "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2), "max_queue_depth": max(s["queue_depth"] for s in samples),
            "others_cpu_share": others,
            "health_after": health, "memory": analyse_memory(samples), "attack": outcomes[1] if attack else None,
            "samples": samples, "latencies_ms": ms}


async def soak(url: str, pid: int, args: argparse.Namespace) -> dict:
    result = await run_load(url, pid, args.concurrency, args.duration, args)
    result.pop("latencies_ms")
    return result


def abandoned_request(port: int, pairs: int) -> bytes:
    body = json.dumps({"pairs": [{"premise": f"{SENTENCES[i % 10]} {i}", "hypothesis": SENTENCES[(i + 3) % 10]}
                                 for i in range(pairs)]}, ensure_ascii=False).encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def make_attack(port: int, args: argparse.Namespace) -> Callable[[float], Awaitable[dict]]:
    """The abuse beside the honest clients: ``--idle`` connections that send ``GET /hea`` and nothing more (each
    reopened a second after the server closes it, until the deadline), and ``--abandoned`` requests of
    ``--abandoned-pairs`` pairs, sent and closed at once, in 10 bursts spread over the run. Loopback only."""
    stats = Counter()

    async def hold_idle(k: int, deadline: float) -> None:
        await asyncio.sleep(k * args.idle_ramp_s / max(1, args.idle))  # they arrive over the first idle_ramp_s
        while (left := deadline - time.perf_counter()) > 0:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), min(left, 10))
            except (OSError, asyncio.TimeoutError):
                stats["idle_connect_failures"] += 1
                await asyncio.sleep(1)
                continue
            stats["idle_opened"] += 1
            try:
                writer.write(b"GET /hea")
                opened = time.perf_counter()
                if await asyncio.wait_for(reader.read(1), deadline - opened) == b"":
                    stats["idle_closed_by_server"] += 1
                    stats["idle_held_s_total"] += time.perf_counter() - opened
            except asyncio.TimeoutError:  # (before OSError: since Python 3.11 it is one)
                pass  # still open at the deadline
            except OSError:  # reset: the server closed it with our bytes unread
                stats["idle_closed_by_server"] += 1
            finally:
                writer.close()
            await asyncio.sleep(1)

    async def abandon(deadline: float) -> None:
        bursts = 10
        request = abandoned_request(port, args.abandoned_pairs)
        interval = (deadline - time.perf_counter()) / (bursts + 1)
        for burst in range(bursts):
            await asyncio.sleep(interval)
            count = args.abandoned // bursts + (burst < args.abandoned % bursts)
            writers = []
            for _ in range(count):
                try:
                    _, writer = await asyncio.open_connection(HOST, port)
                except OSError:
                    stats["abandoned_connect_failures"] += 1
                    continue
                writer.write(request)
                writers.append(writer)
            await asyncio.gather(*(w.drain() for w in writers), return_exceptions=True)
            for writer in writers:
                writer.close()  # gone before any answer
            stats["abandoned_sent"] += len(writers)

    async def attack(deadline: float) -> dict:
        await asyncio.gather(abandon(deadline), *(hold_idle(k, deadline) for k in range(args.idle)))
        held = stats.pop("idle_held_s_total", 0.0)
        closed = stats["idle_closed_by_server"]
        return {**stats, "idle_mean_held_s": round(held / closed, 2) if closed else None}

    return attack


async def abuse(url: str, pid: int, args: argparse.Namespace) -> dict:
    """The same honest load before, during and after each of ``--abuse-rounds`` abuses of the server at ``url``.

    Two rounds tell a one-off high-water mark (the first round's idle connections take memory that Python
    keeps for reuse) from growth: the RSS is flat when the second round adds nothing beyond the noise.
    """
    port = int(url.rstrip("/").rsplit(":", 1)[1])

    async def big_requests(deadline: float) -> dict:
        # Warm-up: the abuse's 64-pair requests, answered, so that the model's memory reaches its working size first.
        body = json.loads(abandoned_request(port, args.abandoned_pairs).split(b"\r\n\r\n", 1)[1])
        sent = 0
        async with httpx.AsyncClient(base_url=url, timeout=args.request_timeout) as client:
            while time.perf_counter() < deadline:
                await client.post("predict", json=body)
                sent += 1
        return {"answered_64_pair_requests": sent}

    # A BERT's RSS grows for its first thousands of batches (torch caches a kernel per new shape; measured in-process:
    # the small model, without any server, 443 -> 572 MiB over 3000 calls, nearly all in the first 1500).
    warm_up = await run_load(url, pid, args.abuse_concurrency, args.warm_up_s, args, big_requests, 0)
    warm_up.pop("latencies_ms")
    plan = [("before", None)]
    for n in range(1, args.abuse_rounds + 1):
        plan += [(f"abuse {n}", make_attack(port, args)), (f"after {n}", None)]
    phases = {}
    for seed, (name, attack) in enumerate(plan):
        # On a shared machine other jobs come and go: start each phase when they leave the cores (mostly) alone.
        waited = await asyncio.to_thread(wait_for_quiet, 0.25, args.quiet_wait_s)
        phases[name] = await run_load(url, pid, args.abuse_concurrency, args.abuse_duration, args, attack, seed + 1)
        phases[name]["waited_for_quiet_s"] = round(waited, 1)
    # The no-abuse p99 pools every phase without abuse, so that a drift in the machine's other load cancels out.
    latencies = {name: phase.pop("latencies_ms") for name, phase in phases.items()}
    baseline_p99 = float(np.percentile(np.concatenate([v for k, v in latencies.items() if "abuse" not in k]), 99))
    abused_p99 = float(np.percentile(np.concatenate([v for k, v in latencies.items() if "abuse" in k]), 99))
    ratio = abused_p99 / baseline_p99
    fives = {k: v for p in phases.values() for k, v in p["statuses"].items() if k.startswith("5") and k != "503"}
    rss = [s["rss_mib"] for p in phases.values() for s in p["samples"]]
    ends = [phases[name]["memory"]["rss_end_mib"] for name, _ in plan if name != "before" and "abuse" not in name]
    first_round = round(ends[0] - rss[0], 1)
    later_rounds = round(ends[-1] - ends[0], 1)
    flat = later_rounds <= max(0.01 * rss[0], 4.0) if len(ends) > 1 else first_round <= max(0.02 * rss[0], 8.0)
    return {"warm_up": {k: warm_up[k] for k in ("requests", "errors", "seconds", "p99_ms", "memory", "attack")},
            "phases": phases, "baseline_p99_ms": round(baseline_p99, 2), "abuse_p99_ms": round(abused_p99, 2),
            "p99_ratio": round(ratio, 2), "other_5xx": fives, "rss_start_mib": rss[0], "rss_peak_mib": max(rss),
            "rss_end_mib": rss[-1], "rss_first_round_growth_mib": first_round,
            "rss_later_rounds_growth_mib": later_rounds if len(ends) > 1 else None,
            "goals": {"p99_within_2x": bool(ratio <= 2), "no_other_5xx": not fives,
                      "no_errors": all(p["errors"] == 0 for p in phases.values()), "rss_flat": bool(flat)}}


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


def write_report(info: dict, result: dict, abused: dict | None, args: argparse.Namespace, load_before: float,
                 fd_note: str) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"duration_s": args.duration, "concurrency": args.concurrency, "sample_every_s": args.sample_s,
                "server_torch_threads": args.torch_threads, "host": HOST,
                "limits": "ServeLimits() defaults: batching on, max_batch_size=32, max_wait_ms=5, max_queue_pairs=1024, "
                          "request_timeout_s=30, header_timeout_s=10, keep_alive_s=5, max_connections=1000",
                "requests": "80% one pair, 15% 2-8 pairs, 5% blank premise (expects 422)",
                "client": "httpx.AsyncClient, closed loop, in this process; the server in its own process",
                "abuse": None if abused is None else {
                    "duration_s_per_phase": args.abuse_duration, "honest_clients": args.abuse_concurrency,
                    "idle_connections": args.idle, "idle_ramp_s": args.idle_ramp_s, "abandoned_requests": args.abandoned,
                    "pairs_per_abandoned_request": args.abandoned_pairs, "rounds": args.abuse_rounds,
                    "model": {"name": args.abuse_model, "hidden_layers_heads_intermediate": MODEL_SIZES[args.abuse_model]},
                    "server_soft_nofile": args.server_nofile or "inherited", "client_file_descriptors": fd_note}}
    (RESULTS / "soak.json").write_text(json.dumps({"machine": info, "settings": settings, "load_1min_before":
                                                   load_before, "result": result, "abuse": abused},
                                                  indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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
    if abused is not None:
        lines += ["", *abuse_report(abused, args, fd_note)]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "\n".join(lines)


def abuse_report(abused: dict, args: argparse.Namespace, fd_note: str) -> list[str]:
    phases, goals = abused["phases"], abused["goals"]
    attacks = {name: phase["attack"] for name, phase in phases.items() if phase["attack"]}
    hidden, layers, _, _ = MODEL_SIZES[args.abuse_model]
    nofile = (f"a soft open-file limit of {args.server_nofile} (Linux's usual default; the hard limit kept)"
              if args.server_nofile else "this process's open-file limit")
    log = abused["server_log"]
    rows = ["| phase | requests | errors | 503 shed | other 5xx | req/s | p50 ms | p99 ms | max ms "
            "| max queue pairs | RSS start MiB | RSS peak MiB | RSS end MiB | other jobs' CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in phases.items():
        m = p["memory"]
        other = sum(v for k, v in p["statuses"].items() if k.startswith("5") and k != "503")
        rows.append(f"| {name} | {p['requests']} | {p['errors']} | {p['shed_503']} | {other} | {p['requests_per_s']} "
                    f"| {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} | {p['max_queue_depth']} | {m['rss_start_mib']} "
                    f"| {m['rss_peak_mib']} | {m['rss_end_mib']} | {p['others_cpu_share']:.0%} |")
    mark = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    return [
        "## Abuse run", "",
        f"A second `run_server` process, serving a random {args.abuse_model} BERT ({hidden}x{layers}: about "
        f"{'2 ms' if args.abuse_model == 'small' else '0.15 ms'} a pair in a batch on one core) with default limits, "
        f"started with {nofile}. After a {args.warm_up_s:g} s warm-up (the honest load and answered "
        f"{args.abandoned_pairs}-pair requests; RSS {abused['warm_up']['memory']['rss_start_mib']} -> "
        f"{abused['warm_up']['memory']['rss_end_mib']} MiB), {args.abuse_concurrency} honest clients (the soak's "
        f"request mix) for {args.abuse_duration:g} s before the abuse, then {args.abuse_rounds} rounds of "
        f"{args.abuse_duration:g} s "
        f"of abuse and {args.abuse_duration:g} s after it. During an abuse, {args.idle} idle connections "
        f"arrive over {args.idle_ramp_s:g} s, each sending `GET /hea` and nothing more and reopened 1 s after the "
        f"server closes it, and {args.abandoned} requests of {args.abandoned_pairs} pairs are sent and closed at "
        "once, in 10 bursts over the phase. All on 127.0.0.1. A 503 with Retry-After is the server shedding load "
        f"on purpose. This process's file descriptors: {fd_note}. Each phase starts once other jobs use at most "
        f"a quarter of the cores (or after {args.quiet_wait_s:g} s); the last column is their share during it.", "",
        *rows, "",
        f"Server log: {log['lines']} lines, {log['accept out of resource']} of them `socket.accept() out of system "
        f"resource`; its connection-limit lines: {log['warnings'] or 'none'}.", "",
        *[f"Attack, {name}: {a.get('idle_opened', 0)} idle connections opened ({a.get('idle_connect_failures', 0)} "
          f"failed to connect), {a.get('idle_closed_by_server', 0)} closed by the server, after "
          f"{a.get('idle_mean_held_s')} s on average (header_timeout_s=10, or sooner to stay within "
          f"max_connections=1000); {a.get('abandoned_sent', 0)} abandoned requests sent "
          f"({a.get('abandoned_connect_failures', 0)} failed to connect)." for name, a in attacks.items()], "",
        f"Goals: honest p99 during the abuse {abused['abuse_p99_ms']} ms = {abused['p99_ratio']}x the no-abuse p99 "
        f"of {abused['baseline_p99_ms']} ms (each pooled over its phases): within 2x {mark(goals['p99_within_2x'])}; "
        f"5xx other than deliberate 503s: {abused['other_5xx'] or 'none'} ({mark(goals['no_other_5xx'])}); "
        f"errors: {sum(p['errors'] for p in phases.values())} ({mark(goals['no_errors'])}); server RSS "
        f"{abused['rss_start_mib']:.1f} MiB at the start, {abused['rss_peak_mib']:.1f} at the peak, "
        f"{abused['rss_end_mib']:.1f} at the end: {abused['rss_first_round_growth_mib']:+} MiB over the first round "
        "(the idle connections' memory, which Python keeps for reuse)"
        + ("" if abused["rss_later_rounds_growth_mib"] is None else
           f", {abused['rss_later_rounds_growth_mib']:+} MiB over the later rounds (flat within max(1%, 4 MiB): "
           f"{mark(goals['rss_flat'])})") + ".",
        *([] if not any(p["error_examples"] for p in phases.values()) else
          ["", "Errors (first 10 per phase):", *[f"- {n}: `{e}`" for n, p in phases.items()
                                                  for e in p["error_examples"]]]),
    ]


def raise_fd_limit(need: int) -> str:
    """Raise this process's soft open-file limit toward ``need`` (up to the hard limit); say what it is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        return f"soft RLIMIT_NOFILE raised from {soft} to {new} (hard {hard}) for {need} needed"
    return f"soft RLIMIT_NOFILE {soft} (hard {hard}), {need} needed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default: 5 minutes)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in the closed loop")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds before a request is an error")
    abuse_args = parser.add_argument_group("abuse run (after the soak, same server)")
    abuse_args.add_argument("--no-abuse", action="store_true", help="skip the abuse run")
    abuse_args.add_argument("--abuse-duration", type=float, default=60.0,
                            help="seconds of each phase: before, during and after the abuse")
    abuse_args.add_argument("--abuse-concurrency", type=int, default=32, help="honest clients")
    abuse_args.add_argument("--idle", type=int, default=1000, help="idle connections held open (GET /hea)")
    abuse_args.add_argument("--idle-ramp-s", type=float, default=2.0, help="seconds over which they arrive")
    abuse_args.add_argument("--abandoned", type=int, default=100, help="requests sent and closed at once")
    abuse_args.add_argument("--abandoned-pairs", type=int, default=64, help="pairs in each abandoned request")
    abuse_args.add_argument("--abuse-rounds", type=int, default=2, help="abuses, each followed by a quiet phase")
    abuse_args.add_argument("--abuse-model", choices=sorted(MODEL_SIZES), default="small",
                            help="the abuse run's model: small (~2 ms a pair) makes abandoned work cost something")
    abuse_args.add_argument("--warm-up-s", type=float, default=90.0,
                            help="seconds of honest load (and answered 64-pair requests) before the measured phases")
    abuse_args.add_argument("--quiet-wait-s", type=float, default=30.0,
                            help="before each phase, wait up to this long for other jobs to leave the cores")
    abuse_args.add_argument("--server-nofile", type=int, default=1024,
                            help="soft open-file limit of the abuse run's server (Linux's usual default; 0: this "
                                 "process's)")
    args = parser.parse_args()
    if args.idle < 0 or args.abandoned < 0 or args.abuse_rounds < 1 or not 1 <= args.abandoned_pairs <= 64:
        parser.error("--idle and --abandoned must be >= 0, --abuse-rounds >= 1, --abandoned-pairs 1 to 64 "
                     "(the server's max_pairs)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # This process holds the idle and abandoned connections besides the honest ones (and the server inherits it).
    fd_note = raise_fd_limit(args.idle + args.abandoned + args.abuse_concurrency + 256)
    load_before = round(os.getloadavg()[0], 2)
    abused = None
    with tempfile.TemporaryDirectory(prefix="korpair-soak-") as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        proc, url = start_server(model_dir, args.torch_threads, Path(tmp) / "server.log")
        try:
            # Each run stops itself: at its deadline, or at the latest 2 minutes after it.
            result = asyncio.run(asyncio.wait_for(soak(url, proc.pid, args), timeout=args.duration + 120))
        finally:
            stop_server(proc)
        if not args.no_abuse:
            model_dir = build_tiny_model(Path(tmp) / args.abuse_model, args.abuse_model)
            log_file = Path(tmp) / "abuse-server.log"
            proc, url = start_server(model_dir, args.torch_threads, log_file, args.server_nofile or None)
            try:
                phases = 2 * args.abuse_rounds + 1  # at the latest a minute and a half a phase after their deadlines
                timeout = args.warm_up_s + phases * (args.abuse_duration + args.quiet_wait_s + 60) + 90
                abused = asyncio.run(asyncio.wait_for(abuse(url, proc.pid, args), timeout=timeout))
            finally:
                stop_server(proc)
            log = log_file.read_text(errors="replace")
            abused["server_log"] = {"lines": log.count("\n"), "accept out of resource": log.count(
                "out of system resource"), "warnings": [line for line in log.splitlines() if "max_connections" in line]}
    report = write_report(machine_info(("torch", "transformers", "fastapi", "uvicorn")), result, abused, args,
                          load_before, fd_note)
    print(report)
    ok = result["errors"] == 0 and result["memory"]["stable"]
    return 0 if ok and (abused is None or all(abused["goals"].values())) else 1


if __name__ == "__main__":
    sys.exit(main())
