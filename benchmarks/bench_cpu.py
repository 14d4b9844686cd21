"""CPU inference: korpair's Predictor and exports against sentence-transformers' CrossEncoder backends, and serving.

One BERT-base-shaped classifier (12x768, random weights, a WordPiece vocabulary learnt from the KLUE-NLI dev
pairs, saved by korpair with a trained max length of 64) is built once in --work. The systems classify the
same KLUE-NLI dev pairs (384 by default) at batch 64, max length 64:

- the transformers ``pipeline`` (the floor every ratio is taken against);
- CrossEncoder with backend torch fp32, ONNX fp32, ONNX dynamic int8 (``export_dynamic_quantized_onnx_model``,
  avx512_vnni), OpenVINO fp32 and OpenVINO static int8 (``export_static_quantized_openvino_model``, calibrated
  offline on KLUE-NLI pairs), run in their own virtual environment (--st-venv, made here when missing:
  optimum-onnx pins transformers < 4.58, below korpair's);
- korpair's Predictor fp32 and bf16, its ONNX fp32 and int8 exports, its OpenVINO fp32 and int8 exports where
  ``korpair.inference.openvino`` exists, and any folder given with --korpair-folder.

Each measurement is a fresh process (bench_cpu_worker.py) that loads, warms up and times one pass; the rounds
are interleaved (each system once a round, the order rotating) and the table gives the median pairs/s. Labels
are compared with korpair fp32's on all KLUE-NLI dev and KorNLI xnli dev pairs. Then each korpair backend is
served (``korpair serve`` in its own process, one pair a request, bench_serve's client) at concurrency 1, 8
and 32. Writes benchmarks/results/cpu.json and cpu.md.

    python benchmarks/bench_cpu.py                  # the benchmark: about an hour on 2 quiet cores
    python benchmarks/bench_cpu.py --quick          # a try-out: 1 round, 64 pairs, short cells, 64 agreement pairs
    python benchmarks/bench_cpu.py --no-serve --rounds 5 --korpair-folder mine=runs/x/model/openvino
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_serve  # noqa: E402
from bench_common import (  # noqa: E402
    RESULT_PREFIX,
    fmt_spread,
    load_average,
    machine_info,
    md_table,
    spread,
    stop_process,
    wait_for_quiet,
)
from bench_cpu_worker import CE_ONNX, CE_ONNX_INT8, CE_OPENVINO, load_klue  # noqa: E402

WORKER = ROOT / "benchmarks" / "bench_cpu_worker.py"
MAX_LEN = 64  # as bench_gpu.build_model sets the tokenizer's
REFERENCE = "korpair Predictor fp32"
PIPELINE = "transformers pipeline"
# CrossEncoder's ONNX and OpenVINO backends, and the calibration set of the static int8 export. datasets 5 needs
# huggingface-hub >= 1.31, which transformers < 4.58 refuses: without the bound pip backtracks through every
# optimum-intel release for many minutes.
ST_INSTALL = (("torch==2.13.0",), ("sentence-transformers[onnx,openvino]", "datasets<5"))
ST_IMPORTS = "import sentence_transformers, optimum.onnxruntime, optimum.intel.openvino, nncf, datasets"
ST_PACKAGES = ("torch", "transformers", "tokenizers", "sentence-transformers", "optimum", "optimum-onnx",
               "optimum-intel", "onnxruntime", "onnx", "openvino", "openvino-tokenizers", "nncf", "datasets",
               "huggingface-hub", "numpy")
KORPAIR_PACKAGES = ("torch", "transformers", "tokenizers", "onnxruntime", "onnx", "openvino", "nncf", "korpair",
                    "fastapi", "uvicorn", "httpx", "numpy")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# The goals.
GOAL_VS_BEST_CE = 1.5
GOAL_SERVED_FRACTION = 0.85
GOAL_P99_OVER_P50 = 3.0
SINGLE_TOLERANCE = 1.05  # concurrency-1 p50 against the offline single-pair call: loopback HTTP + JSON allowance


# --- setup -----------------------------------------------------------------------------------------------

def ensure_st_venv(path: Path) -> Path:
    """The sentence-transformers venv's python: made with ``python3 -m venv`` and pip when missing."""
    python = path / "bin" / "python"
    if python.is_file() and _imports_ok(python):
        return python
    if not python.is_file():
        print(f"bench_cpu: creating {path}", flush=True)
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(path)], check=True)
    for packages in ST_INSTALL:  # torch first: the CPU wheel, where a bare resolve would pull CUDA's
        print(f"bench_cpu: pip install {' '.join(packages)} into {path}", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    if not _imports_ok(python):
        sys.exit(f"bench_cpu: {path} still cannot run `{ST_IMPORTS}`; remove it and run again")
    return python


def _imports_ok(python: Path) -> bool:
    return subprocess.run([str(python), "-c", ST_IMPORTS], capture_output=True).returncode == 0


def worker(python: Path, spec: dict, timeout_s: float, env: dict) -> dict:
    """``bench_common.run_worker`` with a chosen interpreter: the CrossEncoder systems run in the ST venv."""
    cmd = [str(python), str(WORKER), "--worker", json.dumps(spec, ensure_ascii=False)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **env})
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {spec['task']} {spec.get('system', {}).get('name', '')} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def build_folders(work: Path, data: Path, rebuild: bool, st_versions: dict) -> dict[str, Path]:
    """The korpair folder (``base``), the CrossEncoder's copy of it (``ce``) and the calibration pairs, once.

    They are kept in ``work`` between runs; korpair's exports are made anew when korpair's exporter sources
    change, the CrossEncoder's when the ST venv's packages do, everything when the data does (or --rebuild).
    """
    stat = data.stat()
    stamp = {"format": 1, "data": str(data.resolve()), "size": stat.st_size, "mtime": stat.st_mtime,
             "korpair_exporters": exporter_digest(), "st_versions": st_versions}
    stamp_file = work / "stamp.json"
    old = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
    same_data = all(old.get(k) == stamp[k] for k in ("format", "data", "size", "mtime"))
    if rebuild or not same_data:
        shutil.rmtree(work, ignore_errors=True)
    else:
        if old.get("korpair_exporters") != stamp["korpair_exporters"]:
            for folder in work.glob("korpair-*"):
                shutil.rmtree(folder)
        if old.get("st_versions") != stamp["st_versions"]:
            shutil.rmtree(work / "ce", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    base, ce, calibration = work / "base", work / "ce", work / "calibration"
    pairs = load_klue(data)
    if not (base / "config.json").is_file():
        from bench_gpu import build_model

        print("bench_cpu: building the BERT-base-shaped model", flush=True)
        build_model(work, [t for p in pairs for t in p])  # writes work/base
        # As a folder trained at max length 64 says it: `korpair serve` and the exports then use 64 too.
        config = json.loads((base / "config.json").read_text(encoding="utf-8"))
        config["korpair"]["max_seq_length"] = MAX_LEN
        write_atomic(base / "config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    if not (ce / "config.json").is_file():
        # A copy, not links: sentence-transformers' save_pretrained rewrites config.json and the tokenizer files.
        shutil.rmtree(ce, ignore_errors=True)
        shutil.copytree(base, ce)
        # transformers 5 saves the tokenizer as "TokenizersBackend", a class transformers 4.x (the ST venv's)
        # does not have; the generic fast tokenizer reads the same tokenizer.json.
        tok = json.loads((ce / "tokenizer_config.json").read_text(encoding="utf-8"))
        if tok.get("tokenizer_class") == "TokenizersBackend":
            tok["tokenizer_class"] = "PreTrainedTokenizerFast"
            tok.pop("backend", None)
            write_atomic(ce / "tokenizer_config.json", json.dumps(tok, indent=2, ensure_ascii=False) + "\n")
    if not (calibration / "train.jsonl").is_file():
        # datasets.load_dataset(calibration) reads it as the "default" config's "train" split.
        calibration.mkdir(exist_ok=True)
        write_atomic(calibration / "train.jsonl",
                     "".join(json.dumps({"pair": [p, h]}, ensure_ascii=False) + "\n" for p, h in pairs))
    stamp_file.write_text(json.dumps(stamp) + "\n")
    return {"base": base, "ce": ce, "calibration": calibration}


def exporter_digest() -> str:
    """A digest of the korpair sources its exports depend on: a cached export older than them is redone."""
    digest = hashlib.sha256()
    for name in ("onnx.py", "openvino.py", "runtimes.py", "packing.py"):
        path = ROOT / "src" / "korpair" / "inference" / name
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_systems(folders: dict, korpair_folders: dict, ce_files: dict, extra: dict) -> list[dict]:
    """Every system in the race, in table order; ``venv`` says which interpreter runs it."""
    base, ce = str(folders["base"]), str(folders["ce"])

    def crossencoder(name, backend, file_name=None):
        return {"name": f"CrossEncoder {name}", "kind": "crossencoder", "venv": "st", "folder": ce,
                "backend": backend, "file_name": file_name}

    def korpair(name, folder, precision="32", serve_precision="32"):
        return {"name": f"korpair {name}", "kind": "korpair", "venv": "korpair", "folder": str(folder),
                "precision": precision, "serve_precision": serve_precision}

    systems = [
        {"name": PIPELINE, "kind": "pipeline", "venv": "korpair", "folder": base},
        crossencoder("torch fp32", "torch"),
        crossencoder("ONNX fp32", "onnx", CE_ONNX),
        crossencoder("ONNX dynamic int8 (avx512_vnni)", "onnx", CE_ONNX_INT8),
        crossencoder("OpenVINO fp32", "openvino", CE_OPENVINO),
        crossencoder("OpenVINO static int8", "openvino", ce_files["openvino-int8"]),
        korpair("Predictor fp32", base),
        korpair("Predictor bf16", base, "bf16", "bf16"),
        korpair("ONNX fp32", korpair_folders["onnx"]),
        korpair("ONNX int8", korpair_folders["onnx-int8"]),
    ]
    for key, name in (("openvino", "OpenVINO"), ("openvino-int8", "OpenVINO int8")):
        if key in korpair_folders:
            systems.append(korpair(name, korpair_folders[key]))
    for name, folder in extra.items():
        systems.append(korpair(name, folder))
    return systems


# --- measurement -----------------------------------------------------------------------------------------

def run_rounds(systems: list[dict], pythons: dict, args, env: dict) -> dict[str, list[dict]]:
    """Each system once a round, the order rotating; a system that fails is dropped from later rounds."""
    runs: dict[str, list[dict]] = {s["name"]: [] for s in systems}
    for r in range(args.rounds):
        order = systems[r % len(systems):] + systems[: r % len(systems)]
        for system in order:
            if any("error" in run for run in runs[system["name"]]):
                continue
            waited = wait_for_quiet(0.25, args.quiet_wait) if args.quiet_wait else 0.0
            res = time_offline(system, pythons, args, env)
            res["waited_for_quiet_s"] = round(waited, 1)
            runs[system["name"]].append(res)
            brief = res.get("pairs_per_s", "FAILED " + res.get("error", "")[-300:])
            print(f"round {r + 1}/{args.rounds}  {system['name']:<48} {brief}  "
                  f"(others {res.get('others_cpu_share')}, load {res.get('load_1min')})", flush=True)
    return runs


def time_offline(system: dict, pythons: dict, args, env: dict) -> dict:
    """One fresh process that loads the system and times it: pairs/s at the batch size, and for korpair the
    single-pair call too; ``{"error": ...}`` if it fails."""
    spec = {"task": "time", "system": system, "data": str(args.data), "pairs": args.pairs,
            "batch_size": args.batch_size, "max_length": MAX_LEN, "warmup_pairs": 2 * args.batch_size,
            "single_pairs": args.single_pairs if system["kind"] == "korpair" else 0}
    try:
        return worker(pythons[system["venv"]], spec, args.timeout, env)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        return {"system": system["name"], "error": str(err)[-1500:]}


def run_agreement(systems: list[dict], pythons: dict, args, env: dict, work: Path) -> dict[str, dict]:
    """Each system's logits on KLUE-NLI dev and xnli dev; label agreement and max |logit diff| vs korpair fp32."""
    logits, info = {}, {}
    for system in systems:
        out = work / "labels" / (re.sub(r"[^\w.-]+", "_", system["name"]) + ".npz")
        spec = {"task": "labels", "system": system, "data": str(args.data), "xnli": str(args.xnli),
                "limit": args.agree_limit, "batch_size": args.batch_size, "max_length": MAX_LEN, "out": str(out)}
        try:
            res = worker(pythons[system["venv"]], spec, args.agree_timeout, env)
            with np.load(out) as npz:
                logits[system["name"]] = {k: npz[k] for k in npz.files}
            info[system["name"]] = {"seconds": res["seconds"], "pairs": res["pairs"], "labels": res.get("labels")}
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
            info[system["name"]] = {"error": str(err)[-1500:]}
        print(f"labels  {system['name']:<48} {info[system['name']].get('seconds', 'FAILED')}", flush=True)
    ref = logits.get(REFERENCE)
    for name, sets in logits.items():
        if ref is None:
            break
        if info[name].get("labels") != info[REFERENCE].get("labels"):
            info[name]["error"] = f"label order {info[name].get('labels')} differs from korpair's"
        for key in ("klue", "xnli"):
            info[name][f"agreement_{key}"] = round(float((sets[key].argmax(1) == ref[key].argmax(1)).mean()), 4)
            info[name][f"max_logit_diff_{key}"] = float(np.abs(sets[key] - ref[key]).max())
    return info


def start_cli_server(folder: str, precision: str, threads: int, log_file: Path) -> tuple[subprocess.Popen, str]:
    """``korpair serve FOLDER --port 0`` in its own process; its URL once /health says ok."""
    korpair = Path(sys.executable).with_name("korpair")
    cmd = ([str(korpair)] if korpair.is_file() else [sys.executable, "-m", "korpair"]) + [
        "serve", folder, "--port", "0", "--device", "cpu", "--precision", precision]
    env = {**os.environ, **OFFLINE, "OMP_NUM_THREADS": str(threads)}
    with open(log_file, "w") as log:  # a file: a pipe nobody drains would fill with access-log lines
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    match = None
    for _ in range(1800):
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", log_file.read_text(errors="replace"))
        if match or proc.poll() is not None:
            break
        time.sleep(0.1)
    if match:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(match.group(1) + "health", timeout=2).json().get("status") == "ok":
                    return proc, match.group(1)
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"`{' '.join(cmd)}` did not start:\n{log_file.read_text(errors='replace')[-2000:]}")


def run_serving(systems: list[dict], offline: dict, args, work: Path, pythons: dict, env: dict) -> list[dict]:
    """req/s, p50 and p99 at concurrency 1, 8 and 32 for each korpair backend, and the goals' marks.

    Each round times the backend offline again (a fresh process, the idle server beside it) just before its
    served cells, and the goals compare the medians of those: this machine's speed drifts by 20% and more over
    the half hour between the offline rounds and the serving ones, which would decide a ratio by itself.
    """
    bench_serve.PAIRS = load_klue(args.data)[: args.pairs]  # real pairs, one a request
    rows = []
    for system in systems:
        if system["kind"] != "korpair" or offline.get(system["name"], {}).get("median") is None:
            continue
        log_file = work / ("serve-" + re.sub(r"[^\w.-]+", "_", system["name"]) + ".log")
        row = {"system": system["name"], "folder": system["folder"], "precision": system["serve_precision"],
               "cells": []}
        try:
            proc, url = start_cli_server(system["folder"], system["serve_precision"], args.serve_threads, log_file)
        except RuntimeError as err:
            rows.append({**row, "error": str(err)[-1500:]})
            continue
        rounds: dict[int, list[dict]] = {c: [] for c in bench_serve.CONCURRENCY}
        beside = []
        try:
            for _ in range(args.serve_rounds):  # interleaved, so that a slow moment of the machine hits all alike
                beside.append(time_offline(system, pythons, args, env))
                print(f"offline {system['name']:<48} {beside[-1].get('pairs_per_s', 'FAILED')} pairs/s, "
                      f"single {beside[-1].get('single_pair_ms')} ms (beside the server)", flush=True)
                for concurrency in bench_serve.CONCURRENCY:
                    cell = asyncio.run(bench_serve.measure(url, concurrency, args.serve_seconds, 100_000))
                    rounds[concurrency].append(cell)
                    print(f"serve   {system['name']:<48} {cell}", flush=True)
        finally:
            stop_process(proc)
        row["cells"] = [median_cell(cells) for cells in rounds.values() if cells]
        ok = [r for r in beside if "error" not in r]
        reference = offline[system["name"]]  # the offline rounds', where every timing beside the server failed
        if ok:
            singles = [r["single_pair_ms"] for r in ok if r.get("single_pair_ms")]
            reference = {"median": round(statistics.median(r["pairs_per_s"] for r in ok), 2),
                         "single_pair_ms": round(statistics.median(singles), 2) if singles else None}
        row["offline_beside"] = {"used": bool(ok), "runs": beside}
        rows.append(judge_serving(row, reference))
    return rows


def median_cell(cells: list[dict]) -> dict:
    """One concurrency's rounds as one cell: the median of each measure, the errors summed, the rounds kept."""
    out = {"concurrency": cells[0]["concurrency"], "errors": sum(c["errors"] for c in cells)}
    for key in ("requests_per_s", "p50_ms", "p99_ms", "client_cpu_ms_per_request", "load_1min"):
        out[key] = round(statistics.median(c[key] for c in cells), 3 if key.startswith("client") else 2)
    return {**out, "rounds": cells}


def judge_serving(row: dict, offline: dict) -> dict:
    cells = {c["concurrency"]: c for c in row["cells"]}
    goals = {}
    if 32 in cells:
        fraction = cells[32]["requests_per_s"] / offline["median"]
        goals["served_c32_fraction"] = {"value": round(fraction, 3), "goal": f">= {GOAL_SERVED_FRACTION}",
                                        "pass": fraction >= GOAL_SERVED_FRACTION}
    if 8 in cells and cells[8]["p50_ms"]:
        tail = cells[8]["p99_ms"] / cells[8]["p50_ms"]
        goals["p99_over_p50_c8"] = {"value": round(tail, 2), "goal": f"<= {GOAL_P99_OVER_P50}",
                                    "pass": tail <= GOAL_P99_OVER_P50}
    if 1 in cells and offline.get("single_pair_ms"):
        ratio = cells[1]["p50_ms"] / offline["single_pair_ms"]
        goals["c1_p50_over_offline_single"] = {"value": round(ratio, 3), "goal": f"<= {SINGLE_TOLERANCE}",
                                               "offline_single_pair_ms": offline["single_pair_ms"],
                                               "pass": ratio <= SINGLE_TOLERANCE}
    return {**row, "offline_pairs_per_s": offline["median"], "goals": goals}


# --- report ----------------------------------------------------------------------------------------------

def summarise(systems: list[dict], runs: dict, agreement: dict) -> dict[str, dict]:
    table = {}
    for system in systems:
        ok = [r for r in runs[system["name"]] if "error" not in r]
        errors = [r["error"] for r in runs[system["name"]] if "error" in r]
        rates = [r["pairs_per_s"] for r in ok]
        singles = [r["single_pair_ms"] for r in ok if r.get("single_pair_ms")]
        table[system["name"]] = {
            "kind": system["kind"], "pairs_per_s": spread(rates, 2), "median": spread(rates, 2)["median"],
            "single_pair_ms": round(statistics.median(singles), 2) if singles else None,
            "others_cpu_share": spread([r.get("others_cpu_share") for r in ok], 3)["median"],
            "load_s": spread([r.get("load_s") for r in ok], 1)["median"],
            "peak_rss_mib": max((r.get("peak_rss_mib", 0) for r in ok), default=None),
            "openvino_inference_precision": next((r["openvino_inference_precision"] for r in ok
                                                  if "openvino_inference_precision" in r), None),
            "runs": runs[system["name"]], "agreement": agreement.get(system["name"], {}),
            "error": errors[0] if errors else agreement.get(system["name"], {}).get("error"),
        }
    return table


def ratios(table: dict) -> dict:
    """korpair's fastest path against each CrossEncoder backend and against the fastest of them."""
    ours = {n: t["median"] for n, t in table.items() if t["kind"] == "korpair" and t["median"]}
    theirs = {n: t["median"] for n, t in table.items() if t["kind"] == "crossencoder" and t["median"]}
    if not ours or not theirs:
        return {}
    best, best_ce = max(ours, key=ours.get), max(theirs, key=theirs.get)
    return {"korpair_best": best, "korpair_best_pairs_per_s": ours[best],
            "vs": {n: round(ours[best] / v, 2) for n, v in theirs.items()},
            "best_crossencoder": best_ce, "vs_best_crossencoder": round(ours[best] / theirs[best_ce], 2),
            "goal": f">= {GOAL_VS_BEST_CE}x the best CrossEncoder backend",
            "pass": ours[best] / theirs[best_ce] >= GOAL_VS_BEST_CE}


def mark(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def write_report(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "cpu.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    s, info, st = result["settings"], result["machine"], result["st_venv_versions"]
    table, rat = result["systems"], result["ratios"]
    pipe = (table.get(PIPELINE) or {}).get("median")
    rows = []
    for name, t in table.items():
        a = t["agreement"]
        rate = fmt_spread(t["pairs_per_s"]) if t["median"] else "failed"
        vs = f"{t['median'] / pipe:.2f}x" if pipe and t["median"] else ""
        agree = [f"{a[k]:.2%}" if k in a else "" for k in ("agreement_klue", "agreement_xnli")]
        diff = max((a[k] for k in ("max_logit_diff_klue", "max_logit_diff_xnli") if k in a), default=None)
        note = t["openvino_inference_precision"] or ""
        rows.append([name, rate, vs, *agree, "" if diff is None else f"{diff:.1e}", note,
                     t["others_cpu_share"], t["load_s"]])
    title = "# CPU inference: korpair vs sentence-transformers' CrossEncoder"
    if s["quick"]:
        title += "\n\n**QUICK RUN (--quick): a try-out of the script, not a result.**"
    agree_n = (next((t["agreement"].get("pairs") for t in table.values() if t["agreement"].get("pairs")), None)
               or {})
    lines = [
        title, "",
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"ISA {', '.join(k for k, v in info['isa'].items() if v)}. "
        f"Load average (1 min) {result['load_average']['start']} at the start, {result['load_average']['end']} "
        f"at the end.", "",
        f"BERT-base shape (12x768, random weights, WordPiece vocabulary learnt from the KLUE-NLI dev pairs), "
        f"{s['pairs']} KLUE-NLI dev pairs, batch {s['batch_size']}, max length {s['max_length']}, median (and "
        f"min / max) of {s['rounds']} interleaved round(s); each measurement a fresh process that loads, warms up "
        f"on {2 * s['batch_size']} pairs, then times one pass. Labels are compared with korpair Predictor fp32's "
        f"on {agree_n.get('klue', '?')} KLUE-NLI dev and {agree_n.get('xnli', '?')} KorNLI xnli dev pairs; "
        f"the logit difference is the largest over both sets. \"others\" is the share of the cores other "
        f"processes took while a pass was timed (median): above ~0.1 the number is contended. OpenVINO's CPU "
        f"plugin computes in bf16 by default on a CPU with AVX512-BF16 or AMX, so its \"fp32\" means fp32 "
        f"weights (the column says what it computes in).", "",
        md_table(["system", "pairs/s", "vs pipeline", "labels = korpair fp32 (KLUE-NLI dev)", "(xnli dev)",
                  "max abs logit diff", "OpenVINO computes in", "others", "load time s"], rows, "lrrrrrlrr"), "",
    ]
    if rat:
        lines += [f"## korpair's fastest path ({rat['korpair_best']}, {rat['korpair_best_pairs_per_s']} pairs/s) "
                  f"against each CrossEncoder backend", "",
                  md_table(["CrossEncoder backend", "korpair best / it"],
                           [[n, f"{v:.2f}x"] for n, v in rat["vs"].items()]), "",
                  f"Against the best CrossEncoder backend ({rat['best_crossencoder']}): "
                  f"**{rat['vs_best_crossencoder']:.2f}x**; goal {rat['goal']}: {mark(rat['pass'])}.", ""]
    failed = {n: t["error"] for n, t in table.items() if t["error"]}
    if failed:
        lines += ["Failures:", ""] + [f"- {n}: `{e.strip().splitlines()[-1][:300]}`" for n, e in failed.items()]
        lines += [""]
    if result["serving"]:
        srows = []
        for row in result["serving"]:
            if "error" in row:
                srows.append([row["system"], "", "failed to start", "", "", "", ""])
                continue
            for c in row["cells"]:
                srows.append([row["system"], c["concurrency"], c["requests_per_s"], c["p50_ms"], c["p99_ms"],
                              c["errors"], c["load_1min"]])
        grows = []
        for row in result["serving"]:
            g = row.get("goals", {})
            cell = {k: f"{g[k]['value']} {mark(g[k]['pass'])}" if k in g else "" for k in
                    ("served_c32_fraction", "p99_over_p50_c8", "c1_p50_over_offline_single")}
            single = g.get("c1_p50_over_offline_single", {}).get("offline_single_pair_ms", "")
            grows.append([row["system"], row.get("offline_pairs_per_s", ""), cell["served_c32_fraction"],
                          cell["p99_over_p50_c8"], single, cell["c1_p50_over_offline_single"]])
        lines += [
            "## Serving (`korpair serve`, one KLUE-NLI pair a request)", "",
            f"Each backend in its own `korpair serve FOLDER --device cpu --precision P` process "
            f"(OMP_NUM_THREADS={s['serve_threads']}, default batching: max batch 32, max batch tokens 2048, waiting up to 5 ms only for as many requests as the last batch had), on a free "
            f"loopback port; bench_serve's closed-loop client in this process (keep-alive HTTP/1.1 on asyncio "
            f"streams, about 0.1 ms of CPU a request where httpx takes about 3), {s['serve_seconds']} s a "
            f"cell after {bench_serve.WARM_UP_S:g} s of warm-up at the same concurrency (OpenVINO prepares kernels "
            f"for each new batch shape on first sight); each figure is the median of {s.get('serve_rounds', 1)} "
            f"rounds (concurrency 1, 8, 32 in turn, one server). The client shares the cores with the server.", "",
            md_table(["backend", "concurrency", "req/s", "p50 ms", "p99 ms", "errors", "load"], srows,
                     "lrrrrrr"), "",
            f"Goals: served req/s at concurrency 32 >= {GOAL_SERVED_FRACTION:.0%} of the same backend's offline "
            f"pairs/s (batch {s['batch_size']}); p99 <= {GOAL_P99_OVER_P50:g}x p50 at concurrency 8; p50 at "
            f"concurrency 1 not worse than the backend's offline single-pair call (`predict_logits([pair])`, "
            f"median over {s['single_pairs']} pairs; {SINGLE_TOLERANCE - 1:.0%} allowed for loopback HTTP "
            f"and JSON). The offline figures here are timed again in each serving round, in a fresh process "
            f"just before the round's cells with the idle server beside it (the median of the rounds), not "
            f"taken from the table above: the machine's speed drifts over the half hour between the two.", "",
            md_table(["backend", "offline pairs/s", "served c32 / offline", "p99 / p50 at c8",
                      "offline single-pair ms", "c1 p50 / offline single"], grows), "",
        ]
    lines += [
        "## Versions", "",
        f"korpair's venv: Python {info['python']}, " + ", ".join(
            f"{k} {v}" for k, v in info["versions"].items() if k != "python" and v) + ".", "",
        f"sentence-transformers venv ({s['st_venv']}): " + ", ".join(
            f"{k} {v}" for k, v in st.items() if v) + ".", "",
        f"CrossEncoder static int8: `export_static_quantized_openvino_model` with "
        f"`OVQuantizationConfig(num_samples={s['calibration_samples']})`, calibrated on KLUE-NLI dev pairs "
        f"read from a local JSON-lines folder through its dataset arguments (sentence-transformers pads each "
        f"to 384 tokens). korpair's OpenVINO int8 (where present) is calibrated on the same number of "
        f"KLUE-NLI dev pairs.", "",
        f"Command: `{s['command']}`", "",
    ]
    write_atomic(out / "cpu.md", "\n".join(lines))
    print("\n".join(lines))


# --- main ------------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/klue-nli/klue-nli-v1.1_dev.json",
                    help="KLUE-NLI dev JSON (klue-nli-v1.1_dev.json)")
    ap.add_argument("--xnli", type=Path, default=ROOT.parent / "shared/data/kornli/xnli.dev.ko.tsv",
                    help="KorNLI's xnli dev TSV, for label agreement")
    ap.add_argument("--st-venv", type=Path, default=ROOT / ".venv-st",
                    help="the sentence-transformers venv (made when missing)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/korpair-bench-cpu"),
                    help="where the model folders and exports are built (kept between runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=384, help="pairs timed per measurement")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--agree-limit", type=int, default=0, help="agreement on the first N pairs of each set (0: all)")
    ap.add_argument("--calibration-samples", type=int, default=300, help="static int8 calibration pairs")
    ap.add_argument("--single-pairs", type=int, default=48,
                    help="single-pair calls timed (korpair systems), spread evenly over the timed pairs")
    ap.add_argument("--korpair-folder", action="append", default=[], metavar="NAME=PATH",
                    help="another korpair model folder to race (repeatable)")
    ap.add_argument("--only", default="", help="comma-separated name parts: race only those systems "
                    f"(and {REFERENCE})")
    ap.add_argument("--no-serve", action="store_true", help="skip the serving table")
    ap.add_argument("--serve-seconds", type=float, default=10.0, help="measured seconds per serving cell")
    ap.add_argument("--serve-rounds", type=int, default=3,
                    help="rounds of the serving cells (concurrency 1, 8, 32 in turn); each cell reports the median")
    ap.add_argument("--serve-threads", type=int, default=os.cpu_count() or 2, help="the server's OMP_NUM_THREADS")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="wait up to this many seconds for other processes to go quiet before each measurement")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per timed measurement")
    ap.add_argument("--agree-timeout", type=float, default=3600, help="seconds per agreement pass")
    ap.add_argument("--rebuild", action="store_true", help="build the model folder and exports anew")
    ap.add_argument("--quick", action="store_true",
                    help="1 round, 64 pairs, 64 agreement pairs, 32 calibration pairs, 16 single-pair calls, "
                    "3 s serving cells in 1 round, no wait")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.pairs, args.agree_limit, args.calibration_samples = 1, 64, 64, 32
        args.single_pairs, args.serve_seconds, args.serve_rounds, args.quiet_wait = 16, 3.0, 1, 0.0
    for what, path in (("--data (KLUE-NLI dev JSON)", args.data), ("--xnli (KorNLI xnli dev TSV)", args.xnli)):
        if not path.is_file():
            sys.exit(f"bench_cpu: {what} not found at {path}; pass its path")
    return args


def main() -> None:
    args = parse_args()
    extra = {}
    for item in args.korpair_folder:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            sys.exit(f"bench_cpu: --korpair-folder {item!r}: expected NAME=PATH to a model folder")
        extra[name] = str(Path(path).resolve())
    args.work = args.work.resolve()
    start_load = load_average()
    env = {**OFFLINE, "HF_HOME": str(args.work / "hf_home")}
    pythons = {"korpair": Path(sys.executable), "st": ensure_st_venv(args.st_venv.resolve())}
    st_versions = worker(pythons["st"], {"task": "versions", "packages": ST_PACKAGES}, 300, env)["versions"]
    folders = build_folders(args.work, args.data, args.rebuild, st_versions)
    print("bench_cpu: exporting (korpair ONNX / OpenVINO, CrossEncoder ONNX / OpenVINO / int8), once", flush=True)
    prep_k = worker(pythons["korpair"], {"task": "prepare_korpair", "base": str(folders["base"]),
                                         "work": str(args.work), "data": str(args.data),
                                         "calibration_samples": args.calibration_samples}, 3600, env)
    prep_ce = worker(pythons["st"], {"task": "prepare_ce", "ce_dir": str(folders["ce"]), "max_length": MAX_LEN,
                                     "calibration_samples": args.calibration_samples,
                                     "calibration_dir": str(folders["calibration"])}, 3600, env)
    if prep_ce["ce_check"]["num_labels"] != 3:
        sys.exit(f"bench_cpu: CrossEncoder loaded {prep_ce['ce_check']} labels, not 3")
    systems = make_systems(folders, prep_k["folders"], prep_ce["files"], extra)
    if args.only:
        parts = [p.strip().lower() for p in args.only.split(",") if p.strip()]
        systems = [s for s in systems if s["name"] == REFERENCE or any(p in s["name"].lower() for p in parts)]
    runs = run_rounds(systems, pythons, args, env)
    agreement = run_agreement(systems, pythons, args, env, args.work)
    table = summarise(systems, runs, agreement)
    serving = [] if args.no_serve else run_serving(systems, table, args, args.work, pythons, env)
    result = {
        "machine": machine_info(KORPAIR_PACKAGES), "st_venv_versions": st_versions,
        "load_average": {"start": start_load, "end": load_average()},
        "settings": {"quick": args.quick, "rounds": args.rounds, "pairs": args.pairs, "batch_size": args.batch_size,
                     "max_length": MAX_LEN, "agree_limit": args.agree_limit,
                     "calibration_samples": args.calibration_samples, "single_pairs": args.single_pairs,
                     "serve_seconds": args.serve_seconds, "serve_rounds": args.serve_rounds,
                     "serve_threads": args.serve_threads,
                     "quiet_wait_s": args.quiet_wait, "st_venv": str(args.st_venv),
                     "command": " ".join(["python", "benchmarks/bench_cpu.py", *sys.argv[1:]])},
        "exports": {"korpair": prep_k, "crossencoder": prep_ce},
        "systems": table, "ratios": ratios(table), "serving": serving,
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
