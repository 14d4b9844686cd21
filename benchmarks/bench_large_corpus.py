"""Large corpora: peak RSS and encoding speed at 10k, 100k and 1M pairs, streamed and list-based.

A JSONL corpus of 1M unique Korean NLI pairs is generated once with
``tools.sample_corpus.generate_nli_pairs`` (about 2 CPU minutes; reused from --data-dir
after that); the 10k and 100k files are its first lines, which is what
``generate_nli_pairs`` gives for those sizes. The tokenizer is the
from-scratch WordPiece tokenizer of the ``sample`` preset (vocabulary 8000),
learnt from the first 10k pairs. Every cell runs in a fresh interpreter, which
prints its own peak RSS (``VmHWM``) and CPU time, so cells do not share memory.

Ways of encoding a file, each timed from the first read to features on disk:

* ``stream``: ``iter_pairs(strict=False)`` into ``encode_pairs_cached`` with a
  source key: the streamed training path (peak memory: one chunk).
* ``list, then stream``: ``read_pairs`` (every ``Pair`` in RAM), then the same
  ``encode_pairs_cached``: today's ``fit``, which reads splits as lists.
* ``list, in memory``: ``read_pairs``, the in-memory ``encode_pairs``, then
  ``EncodedPairs.save``: what ``encode_pairs_cached`` did before streaming.
* ``cache hit``: ``stream`` again with the same key: features are mapped, not read.

    python benchmarks/bench_large_corpus.py                  # ~7 minutes on 2 busy cores (+2 to generate)
    python benchmarks/bench_large_corpus.py --list-sizes 10000 100000 1000000   # the committed results, ~12
    python benchmarks/bench_large_corpus.py --sizes 10000 100000 --list-sizes 10000

Writes benchmarks/results/large_corpus.json and large_corpus.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
MODES = ("idle", "stream", "list, then stream", "list, in memory", "cache hit")

# One cell in a fresh interpreter: import what training imports, load the tokenizer, encode the
# first n pairs of the file in one mode, print peak RSS, CPU and wall seconds of the encoding.
CHILD = r"""
import itertools, json, resource, sys, tempfile, time
from pathlib import Path
from transformers import PreTrainedTokenizerFast
from korpair.corpora import iter_pairs, read_pairs, sha256_file
from korpair.types import NLI_LABELS, LabelMap
from korpair.features import EncodedPairs, encode_pairs, encode_pairs_cached

mode, tok_dir, path, cache_dir, n = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
labels = LabelMap(NLI_LABELS)
tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

cpu0, wall0 = cpu(), time.perf_counter()
feats = None
if mode in ("stream", "cache hit"):
    key = f"{sha256_file(Path(path))}:{n}"  # what fit would do: the file's digest and the reading options
    pairs = itertools.islice(iter_pairs(path, strict=False), n)
    feats = encode_pairs_cached(tokenizer, pairs, labels, 64, cache_dir, source_key=key)
elif mode == "list, then stream":
    feats = encode_pairs_cached(tokenizer, read_pairs(path, limit=n), labels, 64, cache_dir)
elif mode == "list, in memory":
    folder = Path(tempfile.mkdtemp(dir=cache_dir))
    encode_pairs(tokenizer, read_pairs(path, limit=n), labels, 64).save(folder)
    feats = EncodedPairs.load(folder)
wall, cpu_s = time.perf_counter() - wall0, cpu() - cpu0
hwm_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
disk = sum(f.stat().st_size for f in feats.folder.iterdir()) if feats is not None else 0
print(json.dumps({"pairs": len(feats) if feats is not None else 0, "wall_s": wall, "cpu_s": cpu_s,
                  "peak_rss": hwm_kib * 1024, "features_bytes": disk}))
"""


def make_corpora(folder: Path, sizes: list[int], seed: int) -> dict[int, Path]:
    """One JSONL file per size, reused when present: the largest generated, the others its first lines."""
    from tools.sample_corpus import generate_nli_pairs

    paths = {n: folder / f"nli-{n}-seed{seed}.jsonl" for n in sizes}
    biggest = paths[max(sizes)]
    if not biggest.exists():
        print(f"generating {max(sizes):,} pairs into {biggest} ...", flush=True)
        with open(biggest.with_suffix(".part"), "w", encoding="utf-8") as fh:
            for row in generate_nli_pairs(max(sizes), seed=seed):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(biggest.with_suffix(".part"), biggest)
    for n, path in paths.items():
        if not path.exists():
            with open(biggest, encoding="utf-8") as src, open(path.with_suffix(".part"), "w", encoding="utf-8") as out:
                out.writelines(line for _, line in zip(range(n), src))
            os.replace(path.with_suffix(".part"), path)
    return paths


def make_tokenizer(corpus: Path, folder: Path) -> None:
    from korpair.training.model import train_wordpiece_tokenizer

    with open(corpus, encoding="utf-8") as fh:  # the first 10k pairs, as a from-scratch run of 10k would
        rows = [json.loads(line) for _, line in zip(range(10_000), fh)]
    texts = [t for r in rows for t in (r["premise"], r["hypothesis"])]
    train_wordpiece_tokenizer(texts, vocab_size=8000).save_pretrained(folder)


def run_cell(mode: str, tok_dir: Path, corpus: Path, cache: Path, n: int) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(tok_dir), str(corpus), str(cache), str(n)],
                          capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "true"})
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} at {n} pairs failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    row = {"mode": mode, "pairs": n, "peak_rss_mib": round(out["peak_rss"] / MiB, 1),
           "encode_s": round(out["wall_s"], 2), "cpu_s": round(out["cpu_s"], 2),
           "pairs_per_s": round(n / out["wall_s"]) if n and mode not in ("idle", "cache hit") else None,
           "features_mib": round(out["features_bytes"] / MiB, 1),
           "process_s": round(time.perf_counter() - started, 1), "load_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(row), flush=True)
    return row


def write_report(info: dict, rows: list[dict], corpora: dict[int, Path], files: dict | None = None) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    files = files or {n: {"file": p.name, "bytes": p.stat().st_size} for n, p in corpora.items()}
    (RESULTS / "large_corpus.json").write_text(
        json.dumps({"machine": info, "corpora": files, "results": rows}, indent=2) + "\n")
    idle = next(r["peak_rss_mib"] for r in rows if r["mode"] == "idle")
    lines = [
        "# korpair large-corpus benchmark",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; Python {info['python']}, "
        f"torch {info['torch']}, transformers {info['transformers']}, tokenizers {info['tokenizers']}, "
        f"numpy {info['numpy']}.",
        "",
        "Corpus: unique Korean NLI pairs from `tools.sample_corpus.generate_nli_pairs` (JSONL, ~200 bytes a "
        "pair); from-scratch WordPiece tokenizer (vocabulary 8000), `max_length=64` (pairs average ~20 "
        "tokens). Each cell is a fresh interpreter that imports torch, lightning and transformers and "
        f"loads the tokenizer: that alone peaks at **{idle} MiB** (`idle`). `over idle` is what encoding "
        "adds. `encode s` runs from the first read of the file to features on disk (read, validate, "
        "tokenize, write); `CPU s` is the process's CPU time over the same span (tokenizer threads "
        "included), which other jobs on the machine do not inflate, and `pairs/CPU-s` the rate it gives. `load` is the 1-minute load average after the cell, other people's jobs "
        "included: above the core count, wall times and pairs/s are pessimistic.",
        "",
        "| pairs | mode | peak RSS MiB | over idle MiB | encode s | CPU s | pairs/s | pairs/CPU-s | features MiB | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["mode"] == "idle":
            continue
        per_cpu_s = round(r["pairs"] / r["cpu_s"]) if r["pairs_per_s"] and r["cpu_s"] else ""
        lines.append(
            f"| {r['pairs']:,} | {r['mode']} | {r['peak_rss_mib']} | {round(r['peak_rss_mib'] - idle, 1)} | "
            f"{r['encode_s']} | {r['cpu_s']} | {r['pairs_per_s'] or ''} | {per_cpu_s} | {r['features_mib']} | "
            f"{r['load_1min']} |"
        )
    lines += [
        "",
        "Modes: `stream` is `iter_pairs(strict=False)` into `encode_pairs_cached` (one 4096-pair chunk "
        "in RAM at a time, plus 8 bytes a pair of offsets); `list, then stream` reads every `Pair` "
        "first (`read_pairs`, as `fit` does today) and then streams the list; `list, in memory` is the "
        "encoder before streaming (every token in Python lists and NumPy arrays, then `np.save`); "
        "`cache hit` is `stream` again with the same source key (the features are memory-mapped, not read).",
        "",
    ]
    (RESULTS / "large_corpus.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--list-sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="sizes at which the list-based ways run too")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "korpair-bench",
                        help="where the generated corpus is kept between runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite large_corpus.md from large_corpus.json without measuring")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((RESULTS / "large_corpus.json").read_text())
        corpora = {int(n): args.data_dir / c["file"] for n, c in saved["corpora"].items()}
        write_report(saved["machine"], saved["results"], corpora, saved["corpora"])
        return

    args.data_dir.mkdir(parents=True, exist_ok=True)
    corpora = make_corpora(args.data_dir, args.sizes, args.seed)
    with tempfile.TemporaryDirectory(dir=args.data_dir) as work:
        tok_dir, cache = Path(work) / "tokenizer", Path(work) / "cache"
        cache.mkdir()
        make_tokenizer(corpora[min(args.sizes)], tok_dir)
        rows = [run_cell("idle", tok_dir, corpora[min(args.sizes)], cache, 0)]
        for n in args.sizes:
            modes = ["stream", "cache hit"] + (["list, then stream", "list, in memory"] if n in args.list_sizes else [])
            for mode in modes:
                rows.append(run_cell(mode, tok_dir, corpora[n], cache, n))
    write_report(machine_info(("torch", "transformers", "tokenizers", "numpy")), rows, corpora)
    print((RESULTS / "large_corpus.md").read_text())


if __name__ == "__main__":
    main()
