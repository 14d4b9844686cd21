"""Serving throughput and latency: requests/s, p50 and p99 at concurrency 1, 8 and 32, batching on and off.

Two models with random weights, built here offline: the tests' tiny BERT (2 layers,
hidden 32) and a base-size BERT (12 layers, hidden 768, vocab 30000) that shares the
tiny WordPiece tokenizer. Each (model, batching mode) gets its own server process
(``korpair.serve.run_server`` on a free loopback port), so the asyncio client in
this process does not share a GIL with it. Each cell runs for a few seconds after
a warm-up. Writes benchmarks/results/serve.json and serve.md.

    python benchmarks/bench_serve.py                 # about 2 minutes on 2 CPU cores
    python benchmarks/bench_serve.py --torch-threads 2
    python benchmarks/bench_serve.py --seconds 1     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, stop_process  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LABELS = ("entailment", "neutral", "contradiction")
SENTENCES = [
    "민수는 어제 공원에서 자전거를 탔다", "지영은 집에 있지 않았다", "비가 많이 온다", "날씨가 맑다",
    "할머니가 시장에서 사과를 샀다", "아이들이 운동장에서 축구를 한다", "회의는 오후 세 시에 끝났다",
    "선생님은 학생들에게 숙제를 내 주셨다", "가게 문이 닫혀 있었다", "커피가 너무 뜨겁다",
]
# Premises of 1 to 3 sentences: pairs of varied length, so batches need padding as in real use.
PAIRS = [(" ".join(SENTENCES[i : i + 1 + i % 3]), SENTENCES[(i * 7) % len(SENTENCES)]) for i in range(len(SENTENCES))]
CONCURRENCY = (1, 8, 32)
WARM_UP_S = 2.0  # of load at each cell's concurrency before it is measured
# Batching modes: the default (wait up to 5 ms for company), no waiting (batch only what queued up
# while the model was busy), and off.
MODES = {"on, wait 5 ms": {"batching": True, "max_wait_ms": 5}, "on, wait 0": {"batching": True, "max_wait_ms": 0},
         "off": {"batching": False}}


def build_models(root: Path) -> dict[str, Path]:
    """The tiny classifier of the tests, and a base-size BERT with random weights and the same tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from korpair.config import ModelConfig
    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer
    from korpair.types import LabelMap

    torch.manual_seed(0)
    label_map = LabelMap(LABELS)
    tiny_cfg = ModelConfig(from_scratch=True, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                           intermediate_size=64)
    tokenizer, tiny = build_model_and_tokenizer(tiny_cfg, label_map, SENTENCES * 5, 64)
    export_model(tiny, tokenizer, root / "tiny")
    base_cfg = BertConfig(vocab_size=30000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072, pad_token_id=tokenizer.pad_token_id, num_labels=len(LABELS),
                          id2label=label_map.id2label, label2id=label_map.label2id)
    export_model(BertForSequenceClassification(base_cfg), tokenizer, root / "base")
    return {"tiny (2x32)": root / "tiny", "base (12x768)": root / "base"}


def start_server(model_dir: Path, limits: dict, torch_threads: int,
                 log_file: Path) -> tuple[subprocess.Popen, str]:
    code = ("import sys, json; from korpair.serve import run_server, ServeLimits; "
            "run_server(sys.argv[1], port=0, limits=ServeLimits(**json.loads(sys.argv[2])))")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch_threads)}
    # Everything to a file: a pipe nobody drains would fill with access-log lines and stall the server.
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, str(model_dir), json.dumps(limits)], stdout=log,
                                stderr=subprocess.STDOUT, text=True, env=env)
    # run_server prints "korpair: serving ... on http://127.0.0.1:PORT/" once it listens.
    match = None
    for _ in range(1200):
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", log_file.read_text())
        if match or proc.poll() is not None:
            break
        time.sleep(0.1)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start:\n{log_file.read_text()[-2000:]}")
    url = match.group(1)
    for _ in range(600):
        try:
            if httpx.get(url + "health", timeout=1).json()["status"] == "ok":
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server at {url} never became healthy")


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the answer by its Content-Length.

    The load generator shares the cores with the server, so it must cost little: httpx.AsyncClient spends
    about 3 ms of CPU on a request (more than korpair's server does), which a 2-core machine would charge
    to the server. This costs about 0.1 ms. It speaks only what korpair's server answers: no chunked bodies.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.head = (f"POST {parts.path.rstrip('/')}/predict HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Content-Type: application/json\r\n")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await self.reader.readexactly(length)
        if b"connection: close" in head.lower():
            self.close()
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def measure(url: str, concurrency: int, seconds: float, max_requests: int) -> dict:
    """Closed loop: ``concurrency`` clients, each sends its next request when the last one is answered."""
    latencies: list[float] = []
    errors = 0
    bodies = [json.dumps({"premise": p, "hypothesis": h}, ensure_ascii=False).encode() for p, h in PAIRS]
    connections = [_Connection(url) for _ in range(concurrency)]

    async def one(connection: _Connection, i: int) -> float:
        start = time.perf_counter()
        status = await connection.post(bodies[i % len(bodies)])
        if status != 200:
            raise OSError(f"HTTP {status}")
        return time.perf_counter() - start

    deadline = time.perf_counter() + WARM_UP_S
    counter = iter(range(max_requests))

    async def client_loop(connection: _Connection, record: bool) -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            try:
                latency = await one(connection, i)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += record
                connection.close()
                continue
            if record:
                latencies.append(latency)

    # Warm-up at the cell's own load: connections, and the batch shapes it makes (OpenVINO prepares its kernels
    # for each new input shape on first sight), so that the cell measures the steady state.
    await asyncio.gather(*(client_loop(c, False) for c in connections))
    deadline = time.perf_counter() + seconds
    counter = iter(range(max_requests))
    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client_loop(c, True) for c in connections))
    elapsed, client_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    for connection in connections:
        connection.close()
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(latencies)), 3),
            "load_1min": round(os.getloadavg()[0], 2)}


def write_report(info: dict, rows: list[dict], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"server_torch_threads": args.torch_threads,
                "seconds_per_cell": {"tiny": args.seconds, "base": args.base_seconds},
                "max_requests_per_cell": {"tiny": args.max_requests, "base": args.base_max_requests},
                "modes": MODES, "other limits": "ServeLimits() defaults (max_batch_size=32)",
                "client": "bench_serve._Connection (keep-alive HTTP/1.1 over asyncio streams) in a separate process, "
                          "closed loop, loopback only"}
    (RESULTS / "serve.json").write_text(json.dumps({"machine": info, "settings": settings, "results": rows},
                                                   indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        "# korpair serve benchmark", "",
        f"Machine: {info['cpu']}, {info['cores']} cores; server torch threads: {args.torch_threads}; "
        f"Python {info['python']}, torch {info['torch']}, transformers {info['transformers']}, "
        f"fastapi {info['fastapi']}, uvicorn {info['uvicorn']}.", "",
        "Random-weight models, tiny WordPiece tokenizer (short sequences, ~10-40 tokens per pair); one request = "
        "one pair; server and client share the machine's cores. Batching on: `max_batch_size=32` and "
        "`max_wait_ms` as shown.",
        "",
        "The load column is the machine's 1-minute load average after the cell, other processes included: "
        "above the core count, other jobs competed for the CPU and the numbers are pessimistic.", "",
        "| model | batching | concurrency | requests | req/s | p50 ms | p99 ms | errors | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batching']} | {r['concurrency']} | {r['requests']} | "
                     f"{r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r['load_1min']} |")
    (RESULTS / "serve.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell, tiny model")
    parser.add_argument("--base-seconds", type=float, default=5.0, help="measured seconds per cell, base model")
    parser.add_argument("--max-requests", type=int, default=20_000, help="requests per cell at most, tiny model")
    parser.add_argument("--base-max-requests", type=int, default=600, help="requests per cell at most, base model")
    # One thread by default: on a small machine the client needs a core too, and torch's
    # OpenMP threads wait for each other badly when cores are oversubscribed.
    parser.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    rows = []
    with tempfile.TemporaryDirectory(prefix="korpair-bench-") as tmp:
        models = build_models(Path(tmp))
        for name, model_dir in models.items():
            base = name.startswith("base")
            seconds = args.base_seconds if base else args.seconds
            max_requests = args.base_max_requests if base else args.max_requests
            for mode, limits in MODES.items():
                proc, url = start_server(model_dir, limits, args.torch_threads, Path(tmp) / "server.log")
                try:
                    for concurrency in CONCURRENCY:
                        row = asyncio.run(measure(url, concurrency, seconds, max_requests))
                        rows.append({"model": name, "batching": mode, **row})
                        print(rows[-1], flush=True)
                finally:
                    stop_process(proc)
    write_report(machine_info(("torch", "transformers", "fastapi", "uvicorn")), rows, args)


if __name__ == "__main__":
    main()
