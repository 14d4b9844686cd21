"""Similarity (regression) training speed: korpair against the Hugging Face regression recipe.

The STS workload of the training benchmark (``bench_train.py`` holds the NLI
ones and the helpers used here): KorSTS train (5749 pairs) from ../shared/data,
validation on the first pairs of KorSTS dev; a base-size BERT (12 layers x 768,
vocab 30000 as kcbert-base) from the same random weights for every system, one
output and ``problem_type="regression"`` (MSE on the 0-5 score); max length
128, batch 32, AdamW lr 5e-5, weight decay 0.01, linear warmup (10% of the
steps) and decay, a fixed number of steps.

Systems (as in bench_train.py):
  korpair default   ``korpair.training.fit`` (sanity check, checkpoints, final validation, export),
                    precision auto, no rounding of batch lengths on a CPU
  korpair fp32      the same in fp32 with batch lengths rounded to 8
  HF default        datasets.map + DataCollatorWithPadding + Trainer with float labels (the run_glue
                    STS-B recipe), defaults: fp32, random order
  HF best           the same with bf16=True and group_by_length

Each run in its own process; throughput leaves the first 2 steps out. After
the same number of steps each system's validation MSE is reported, and its
difference to the system it is compared with: from the same weights, with the
same schedule, they differ only by the order of the batches.

    python benchmarks/bench_sts.py                     # 8 steps, 300 validation pairs
    python benchmarks/bench_sts.py --steps 4 --validation-pairs 64   # a check, about 3 minutes on 2 cores

Writes benchmarks/results/sts.json and sts.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import emit_result, fmt_spread, machine_info, md_table, run_worker, spread  # noqa: E402
from bench_train import BATCH, EVAL_BATCH, MAX_LENGTH, SYSTEMS, WORKLOADS, _BatchLog  # noqa: E402

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "korsts"
SHAPE = WORKLOADS["W2"]  # base-size BERT
PAIRS_OF_RATIOS = (("korpair default", "HF default"), ("korpair default", "HF best"), ("korpair fp32", "HF default"))


def worker_prepare(spec: dict) -> dict:
    """KorSTS train and the head of dev as JSONL, one WordPiece tokenizer, the initial regression model."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from korpair.config import CorpusConfig
    from korpair.corpora import read_split
    from korpair.training.model import head_config, train_wordpiece_tokenizer
    from korpair.types import ScoreRange

    root = Path(spec["root"])
    corpus = CorpusConfig(name="korsts", data_dir=spec["data"], download=False)
    parts = {"train": read_split(corpus, "train"),
             "validation": read_split(corpus, "validation")[: spec["validation_pairs"]]}
    for name, pairs in parts.items():
        with open(root / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for p in pairs:
                fh.write(json.dumps({"sentence1": p.premise, "sentence2": p.hypothesis, "score": p.label},
                                    ensure_ascii=False) + "\n")
    tokenizer = train_wordpiece_tokenizer((t for p in parts["train"] for t in (p.premise, p.hypothesis)), 8000)
    torch.manual_seed(spec["seed"])
    config = BertConfig(vocab_size=SHAPE["vocab"], hidden_size=SHAPE["hidden"], num_hidden_layers=SHAPE["layers"],
                        num_attention_heads=SHAPE["heads"], intermediate_size=SHAPE["ff"],
                        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                        **head_config(ScoreRange(0, 5)))
    model = BertForSequenceClassification(config)
    model.save_pretrained(root / "init")
    tokenizer.save_pretrained(root / "init")
    return {"train_pairs": len(parts["train"]), "validation_pairs": len(parts["validation"]),
            "parameters": sum(p.numel() for p in model.parameters())}


def worker_train_korpair(spec: dict) -> dict:
    """``korpair.training.fit`` on the scores, timed through its callbacks."""
    import lightning as L

    from korpair.config import TrainConfig
    from korpair.hardware import resolve_precision
    from korpair.training import fit

    root = Path(spec["root"])
    out = Path(tempfile.mkdtemp(dir=root, prefix="korpair-"))
    cfg = TrainConfig.from_dict({
        "corpus": {"name": "files", "task": "regression", "score_range": [0, 5],
                   "train_file": str(root / "train.jsonl"), "validation_file": str(root / "validation.jsonl")},
        "model": {"name_or_path": str(root / "init")},
        "data": {"max_seq_length": MAX_LENGTH, "batch_size": BATCH, "eval_batch_size": EVAL_BATCH,
                 "cache_dir": str(out / "cache")},
        "optim": {"lr": SHAPE["lr"], "warmup_steps": spec["warmup_steps"]},
        "trainer": {"output_dir": str(out / "run"), "seed": spec["seed"], "max_steps": spec["steps"],
                    "max_epochs": 1000, "progress_bar": False},
    }).with_overrides(spec["overrides"])
    log = _BatchLog()

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            log.record_batch(batch["attention_mask"])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            log.end_step()

    start = time.perf_counter()
    metrics = fit(cfg, callbacks=[Clock()]).metrics
    wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return {**log.summary(SHAPE, spec["steps"]), "train_wall_s": wall, "val_loss": metrics["val_loss"],
            "val_spearman": metrics["val_spearman"],
            "precision": resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)[0]}


def worker_train_hf(spec: dict) -> dict:
    """The Hugging Face regression recipe: float labels, num_labels=1, Trainer."""
    import datasets
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    datasets.disable_progress_bars()
    root, system = Path(spec["root"]), SYSTEMS[spec["system"]]
    out = Path(tempfile.mkdtemp(dir=root, prefix="hf-"))
    tokenizer = AutoTokenizer.from_pretrained(root / "init")
    model = AutoModelForSequenceClassification.from_pretrained(root / "init")
    raw = datasets.load_dataset("json", data_files={"train": str(root / "train.jsonl"),
                                                     "validation": str(root / "validation.jsonl")})

    def tokenize(batch):
        enc = tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=MAX_LENGTH)
        enc["label"] = [float(s) for s in batch["score"]]
        return enc

    encoded = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names, load_from_cache_file=False)
    log = _BatchLog()
    collator = DataCollatorWithPadding(tokenizer)

    def counting_collator(features):
        batch = collator(features)
        if len(log.lengths) < spec["steps"]:
            log.record_batch(batch["attention_mask"])
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:
            log.end_step()

    args = TrainingArguments(
        output_dir=str(out), use_cpu=True, seed=spec["seed"], max_steps=spec["steps"],
        per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH, learning_rate=SHAPE["lr"],
        weight_decay=0.01, warmup_steps=spec["warmup_steps"], lr_scheduler_type="linear", bf16=system["bf16"],
        train_sampling_strategy="group_by_length" if system["group_by_length"] else "random",
        save_strategy="no", report_to="none", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                      data_collator=counting_collator, processing_class=tokenizer, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    metrics = trainer.evaluate()
    shutil.rmtree(out, ignore_errors=True)
    return {**log.summary(SHAPE, spec["steps"]), "train_wall_s": wall, "val_loss": float(metrics["eval_loss"]),
            "precision": "bf16-mixed" if system["bf16"] else "32"}


WORKERS = {"prepare": worker_prepare, "train-korpair": worker_train_korpair, "train-hf": worker_train_hf}


def run_suite(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="korpair-bench-sts-"))
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(root / "hf"),
           "HF_DATASETS_CACHE": str(root / "hf" / "datasets"), "KORPAIR_HOME": str(root / "korpair"),
           "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    warmup = max(1, args.steps // 10)
    try:
        prep = run_worker(HERE, {"task": "prepare", "root": str(root), "data": str(args.data),
                                 "validation_pairs": args.validation_pairs, "seed": args.seed}, 600, env)
        runs = []
        for r in range(args.repeats):
            order = list(SYSTEMS)[r % len(SYSTEMS):] + list(SYSTEMS)[: r % len(SYSTEMS)]
            for name in order:
                spec = {"task": "train-korpair" if SYSTEMS[name]["kind"] == "korpair" else "train-hf",
                        "root": str(root), "system": name, "seed": args.seed, "steps": args.steps,
                        "warmup_steps": warmup, "overrides": SYSTEMS[name].get("overrides", [])}
                t0 = time.perf_counter()
                result = run_worker(HERE, spec, 1200, env)
                print(f"  {name}: {time.perf_counter() - t0:.0f} s, {result['samples_per_s']:.2f} samples/s, "
                      f"val MSE {result['val_loss']:.4f}, load {result['load_1min']}", flush=True)
                runs.append({"repeat": r, "system": name, **result})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"prepare": prep, "steps": args.steps, "warmup_steps": warmup, "repeats": args.repeats,
            "train": runs, "suite_seconds": round(time.perf_counter() - started, 1)}


def summarise(raw: dict) -> dict:
    systems = {name: {key: spread([r[key] for r in raw["train"] if r["system"] == name], 4)
                      for key in ("samples_per_s", "step_s", "padding_efficiency", "val_loss", "peak_rss_mib")}
               for name in SYSTEMS}
    ratios = {}
    for a, b in PAIRS_OF_RATIOS:
        pairs = [(x, y) for x in raw["train"] for y in raw["train"]
                 if x["system"] == a and y["system"] == b and x["repeat"] == y["repeat"]]
        ratios[f"{a} / {b}"] = {
            "samples_per_s": spread([x["samples_per_s"] / y["samples_per_s"] for x, y in pairs]),
            "val_loss_diff": spread([x["val_loss"] - y["val_loss"] for x, y in pairs], 4),
            "val_loss_rel_diff": spread([(x["val_loss"] - y["val_loss"]) / y["val_loss"] for x, y in pairs], 4)}
    return {"systems": systems, "ratios": ratios}


def write_report(raw: dict, summary: dict, info: dict, out_dir: Path) -> str:
    p = raw["prepare"]
    lines = ["# STS training benchmark: korpair vs the Hugging Face regression recipe", "",
             f"Machine: {info.get('cpu')}, {info.get('cores')} cores; torch {info.get('torch')}.", "",
             f"Data: KorSTS train {p['train_pairs']} pairs, validation the first {p['validation_pairs']} of dev; "
             f"BERT 12 x 768 ({p['parameters'] / 1e6:.0f} M parameters, random weights, one output), max length "
             f"{MAX_LENGTH}, batch {BATCH}, lr {SHAPE['lr']}; {raw['steps']} steps (warmup {raw['warmup_steps']}), "
             f"throughput over steps 3-{raw['steps']}; {raw['repeats']} repeat(s). Spreads: min / **median** / max.",
             "", md_table(["system", "samples/s", "s/step", "pad eff.", "val MSE", "peak RSS MiB"],
                          [[name, fmt_spread(s["samples_per_s"]), fmt_spread(s["step_s"]),
                            fmt_spread(s["padding_efficiency"]), fmt_spread(s["val_loss"]),
                            fmt_spread(s["peak_rss_mib"])] for name, s in summary["systems"].items()]),
             "", md_table(["korpair / HF", "samples/s ratio", "val MSE difference", "relative"],
                          [[k, fmt_spread(v["samples_per_s"]), fmt_spread(v["val_loss_diff"]),
                            fmt_spread(v["val_loss_rel_diff"])] for k, v in summary["ratios"].items()]),
             "", f"Suite: {raw['suite_seconds']:.0f} s."]
    text = "\n".join(lines) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sts.md").write_text(text, encoding="utf-8")
    (out_dir / "sts.json").write_text(json.dumps({"raw": raw, "summary": summary, "machine": info}, indent=2) + "\n",
                                      encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps of every system (default 8)")
    parser.add_argument("--validation-pairs", type=int, default=300, help="KorSTS dev pairs validated (default 300)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of every run (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data order")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with KorSTS's sts-*.tsv")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for sts.json / sts.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        emit_result(WORKERS[spec["task"]](spec))
        return
    if not (args.data / "sts-train.tsv").is_file():
        parser.error(f"{args.data}: no sts-train.tsv; pass --data PATH/korsts")
    if args.steps < 3:
        parser.error("--steps: at least 3 (the first 2 are left out of the throughput)")
    raw = run_suite(args)
    print(write_report(raw, summarise(raw), machine_info(), args.results))


if __name__ == "__main__":
    main()
