"""GPU inference side by side: korpair's Predictor against sentence-transformers' CrossEncoder on one GPU.

Both load the same folder: a BERT-base-shaped classifier (12x768, random weights) saved by korpair, which
CrossEncoder reads as the plain Hugging Face folder it is. Both classify the same KLUE-NLI dev pairs at max
length 64, in interleaved rounds (each system once per round, the order rotating), and the table gives the
median pairs/s. Label agreement is measured against korpair in fp32, so a fast path that changes answers shows.

Needs a CUDA GPU, sentence-transformers, and ../shared/data/klue-nli (or --data). It runs where no package
can be fetched, so it uses only what korpair and sentence-transformers need anyway.

    python benchmarks/bench_gpu.py --out benchmarks/results     # writes gpu.json and gpu.md

Where korpair is not installed (a lent GPU machine), ``PYTHONPATH=src`` is enough for what it uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import md_table  # noqa: E402

LABELS = ("entailment", "neutral", "contradiction")
MAX_LEN = 64


def load_pairs(path: Path) -> list[tuple[str, str]]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [(r["premise"], r["hypothesis"]) for r in rows]


def build_model(root: Path, texts: list[str]) -> Path:
    """A base-size BERT with random weights and a WordPiece vocabulary learnt from the pairs, as korpair saves it."""
    from transformers import BertConfig, BertForSequenceClassification

    from korpair.training.export import export_model
    from korpair.training.model import train_wordpiece_tokenizer
    from korpair.types import LabelMap

    torch.manual_seed(0)
    label_map = LabelMap(LABELS)
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=30000, model_max_length=MAX_LEN)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, pad_token_id=tokenizer.pad_token_id, num_labels=len(LABELS),
                     id2label=label_map.id2label, label2id=label_map.label2id)
    model = BertForSequenceClassification(cfg).eval()
    export_model(model, tokenizer, root / "base")
    return root / "base"


def systems(model_dir: Path, batch_size: int, device: str) -> dict:
    """name -> function(pairs) -> probabilities (n, 3), each loaded once."""
    from sentence_transformers import CrossEncoder

    from korpair import Predictor

    found = {}
    for precision, name in (("32", "fp32"), ("16", "fp16 autocast"), ("bf16", "bf16 autocast")):
        pred = Predictor.from_pretrained(model_dir, device=device, precision=precision, max_seq_length=MAX_LEN)
        found[f"korpair Predictor {name}"] = (lambda p, pred=pred: pred.predict_proba(p, batch_size))
    for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16"), (torch.bfloat16, "bf16")):
        ce = CrossEncoder(str(model_dir), device=device, max_length=MAX_LEN, model_kwargs={"dtype": dtype})
        found[f"CrossEncoder {name}"] = (
            lambda p, ce=ce: ce.predict(p, batch_size=batch_size, show_progress_bar=False, apply_softmax=True))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/klue-nli/klue-nli-v1.1_dev.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/korpair-bench-gpu"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument("--batch-sizes", default="64,256")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda", help="cpu only to try the script out (with --limit)")
    ap.add_argument("--limit", type=int, default=0, help="use the first N pairs only")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA GPU here")
    pairs = load_pairs(args.data)[: args.limit or None]
    model_dir = build_model(args.work, [t for p in pairs for t in p])
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu (a try-out, not a result)"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows, results = [], []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        fns = systems(model_dir, batch_size, args.device)
        names = list(fns)
        probs = {}
        for name in names:  # warm-up: kernels, autotuning, allocator
            probs[name] = np.asarray(fns[name](pairs))
        ref = probs["korpair Predictor fp32"].argmax(1)
        rates: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                sync()
                t0 = time.perf_counter()
                fns[name](pairs)
                sync()
                rates[name].append(len(pairs) / (time.perf_counter() - t0))
        base = statistics.median(rates["CrossEncoder fp32"])
        for name in names:
            med = statistics.median(rates[name])
            agree = float((probs[name].argmax(1) == ref).mean())
            err = float(np.abs(probs[name] - probs["korpair Predictor fp32"]).max())
            results.append({"batch_size": batch_size, "system": name, "pairs_per_s": rates[name],
                            "median": med, "vs_crossencoder_fp32": med / base, "label_agreement": agree,
                            "max_prob_diff": err})
            rows.append([batch_size, name, f"{med:,.0f}", f"{med / base:.2f}x", f"{agree:.2%}", f"{err:.1e}"])
        del fns
        if cuda:
            torch.cuda.empty_cache()
    info = {"gpu": gpu, "torch": torch.__version__, "pairs": len(pairs), "max_length": MAX_LEN,
            "rounds": args.rounds}
    import sentence_transformers
    import transformers
    info.update(transformers=transformers.__version__, sentence_transformers=sentence_transformers.__version__)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps({"info": info, "results": results}, indent=1) + "\n")
    table = md_table(["batch", "system", "pairs/s", "vs CrossEncoder fp32", "labels = korpair fp32",
                      "max prob. diff vs korpair fp32"], rows, align="rlrrrr")
    (args.out / "gpu.md").write_text(
        f"# GPU inference: korpair Predictor vs CrossEncoder\n\n{gpu}; torch {info['torch']}, transformers "
        f"{info['transformers']}, sentence-transformers {info['sentence_transformers']}. BERT-base shape "
        f"(12x768, random weights), {len(pairs)} KLUE-NLI dev pairs, max length {MAX_LEN}, median of "
        f"{args.rounds} interleaved rounds after a warm-up.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
