"""Training, evaluation, encoding and inference speed: korpair against the Hugging Face recipe.

Two workloads on the same data, the same initial weights and the same
hyper-parameters for every system:

  W1 tiny  BERT 4 layers x 256, trained from random weights, vocab 8000
  W2 base  BERT 12 layers x 768 (vocab 30000 as kcbert-base), random weights, a fixed number of steps

Data: KLUE-NLI v1.1 dev (3000 pairs) from ../shared/data, split 2700 train /
300 validation; one WordPiece tokenizer (``korpair.training.model.train_wordpiece_tokenizer``,
8000 pieces) learnt from the training texts serves both workloads. max_seq_length
128, batch 32, AdamW lr (W1 3e-4, W2 5e-5), weight decay 0.01 off biases and
norms, linear warmup (10% of the steps) and decay, gradient clipping at 1.0.

Systems:
  korpair default   ``korpair.training.fit`` itself (what ``korpair.train`` runs: sanity check,
                    checkpoints, final validation, export), timed through its callbacks, with
                    its default settings: precision auto
                    (bf16-mixed on a CPU with AVX512-BF16 or AMX), no rounding of batch
                    lengths on a CPU. These are also its best settings here.
  korpair fp32      the same in fp32 with batch lengths rounded to 8 (korpair 0.1's
                    defaults): the like-for-like match for HF default
  HF default        datasets.map + fast tokenizer + DataCollatorWithPadding + Trainer, defaults
  HF best           the same with bf16=True and train_sampling_strategy="group_by_length"
                    (v5's name for group_by_length)

Every measurement runs in its own process (peak RSS is its own); the systems are
interleaved within each repeat, in a rotating order, so a busy machine slows
them alike. Throughput counts the steady state: the first 2 steps (allocator,
kernel selection) are left out. Model FLOPs count the real tokens only
(padding is waste), 3x the forward pass; MFU divides them by the machine's
matmul peak, which the suite measures itself with a torch matmul loop (fp32
for fp32 runs, bf16 for bf16 runs).

Also: encoding time (korpair encode_pairs vs HF datasets.map vs a per-example
loop over transformers' Python BertTokenizerLegacy, as ratsnlp tokenizes),
inference (Predictor on PyTorch and on ONNX Runtime at batch 64 vs
transformers.pipeline("text-classification")), and the agreement of ONNX fp32
and int8 predictions with PyTorch on the 3000 dev pairs, with a W1 model
trained here.

    python benchmarks/bench_train.py             # everything, about 25 minutes on 2 cores
    python benchmarks/bench_train.py --quick     # fewer steps and pairs, one repeat: about 3 minutes
    python benchmarks/bench_train.py --workloads W2 --repeats 3 --w2-steps 40

Writes benchmarks/results/train.json, train.md and train_profile.txt.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (  # noqa: E402
    cpu_ticks,
    emit_result,
    fmt_spread,
    load_average,
    machine_info,
    md_table,
    others_cpu_share,
    run_worker,
    spread,
    wait_for_quiet,
)

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "klue-nli" / "klue-nli-v1.1_dev.json"
LABELS = ("entailment", "neutral", "contradiction")
MAX_LENGTH, BATCH, EVAL_BATCH, INFER_BATCH = 128, 32, 64, 64
VALIDATION_PAIRS = 300
SKIP_STEPS = 2  # steps left out of the throughput window

WORKLOADS = {
    "W1": {"layers": 4, "hidden": 256, "heads": 4, "ff": 1024, "vocab": None, "lr": 3e-4},
    "W2": {"layers": 12, "hidden": 768, "heads": 12, "ff": 3072, "vocab": 30000, "lr": 5e-5},
}
SYSTEMS = {
    "korpair default": {"kind": "korpair", "overrides": []},
    # No rounding of the batch length on a CPU: multiples of 8 help GPU tensor cores, here they
    # only add padding (89% real tokens instead of 98% on this data).
    "korpair fp32": {"kind": "korpair", "overrides": ["trainer.precision=32", "data.pad_to_multiple_of=8"]},
    "HF default": {"kind": "hf", "bf16": False, "group_by_length": False},
    "HF best": {"kind": "hf", "bf16": True, "group_by_length": True},
}
PAIRS_OF_RATIOS = (("korpair default", "HF default"), ("korpair default", "HF best"),
                   ("korpair fp32", "HF default"))


# ------------------------------------------------------------------ workers (run in their own process)


def worker_prepare(spec: dict) -> dict:
    """Split the data, learn the tokenizer, save the initial weights of W1 and W2."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from korpair.corpora import read_pairs
    from korpair.training.model import train_wordpiece_tokenizer

    root = Path(spec["root"])
    pairs = read_pairs(spec["data"])
    # Held-out pairs spread over the file (every 10th), not its tail: KLUE groups pairs by source.
    validation = [p for i, p in enumerate(pairs) if i % 10 == 9][: spec["validation_pairs"]]
    train = [p for i, p in enumerate(pairs) if i % 10 != 9]
    for name, part in (("train", train), ("validation", validation)):
        with open(root / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for p in part:
                fh.write(json.dumps({"premise": p.premise, "hypothesis": p.hypothesis, "label": p.label},
                                    ensure_ascii=False) + "\n")
    with open(root / "all.jsonl", "w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps({"premise": p.premise, "hypothesis": p.hypothesis, "label": p.label},
                                ensure_ascii=False) + "\n")
    tokenizer = train_wordpiece_tokenizer((t for p in train for t in (p.premise, p.hypothesis)), 8000)
    sizes = {}
    for name, wl in WORKLOADS.items():
        torch.manual_seed(spec["seed"])
        config = BertConfig(
            vocab_size=wl["vocab"] or len(tokenizer), hidden_size=wl["hidden"], num_hidden_layers=wl["layers"],
            num_attention_heads=wl["heads"], intermediate_size=wl["ff"], max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id, num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
        )
        model = BertForSequenceClassification(config)
        model.save_pretrained(root / name / "init")
        tokenizer.save_pretrained(root / name / "init")
        sizes[name] = sum(p.numel() for p in model.parameters())
    enc = tokenizer([p.premise for p in train], [p.hypothesis for p in train], truncation=True, max_length=MAX_LENGTH)
    mean_length = sum(map(len, enc["input_ids"])) / len(train)
    return {"train_pairs": len(train), "validation_pairs": len(validation), "all_pairs": len(pairs),
            "vocab": len(tokenizer), "parameters": sizes, "mean_train_tokens": mean_length}


def worker_peak(spec: dict) -> dict:
    import torch
    from bench_common import matmul_peak_gflops

    return {"fp32": matmul_peak_gflops(torch.float32, spec["seconds"]),
            "bf16": matmul_peak_gflops(torch.bfloat16, spec["seconds"])}


def worker_encode(spec: dict) -> dict:
    """korpair encode_pairs vs HF datasets.map vs a per-example Python-tokenizer loop, interleaved."""
    import itertools

    import datasets
    from transformers import AutoTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from korpair.corpora import read_pairs
    from korpair.features import encode_pairs, encode_pairs_cached
    from korpair.types import LabelMap

    datasets.disable_progress_bars()
    root = Path(spec["root"])
    pairs = read_pairs(root / "all.jsonl")
    labels = LabelMap(LABELS)
    tokenizer = AutoTokenizer.from_pretrained(root / "W1" / "init")
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (root / "vocab.txt").write_text("".join(tok + "\n" for tok, _ in vocab), encoding="utf-8")
    # The Python (slow) WordPiece tokenizer of transformers v5, with the same vocabulary and no lower-casing.
    slow = BertTokenizerLegacy(str(root / "vocab.txt"), do_lower_case=False, strip_accents=False)
    raw = datasets.Dataset.from_dict({"premise": [p.premise for p in pairs],
                                      "hypothesis": [p.hypothesis for p in pairs],
                                      "label": [labels.id(p.label) for p in pairs]})

    def hf_tokenize(batch):
        return tokenizer(batch["premise"], batch["hypothesis"], truncation=True, max_length=MAX_LENGTH)

    def run_korpair():
        return encode_pairs(tokenizer, pairs, labels, MAX_LENGTH)

    def run_hf():
        return raw.map(hf_tokenize, batched=True, remove_columns=["premise", "hypothesis"],
                       load_from_cache_file=False)

    distinct = list(dict.fromkeys(t for p in pairs for t in (p.premise, p.hypothesis)))
    backend = tokenizer.backend_tokenizer

    def run_rust_only():
        # The floor of any encoder built on HF tokenizers: the Rust tokenizer alone on the distinct
        # sentences (korpair tokenizes each once), without special tokens, ids or arrays.
        return backend.encode_batch_fast(distinct, add_special_tokens=False)

    slow_pairs = pairs[: spec["slow_pairs"]]

    def run_slow():
        # ratsnlp's recipe: one pair per call, padded to max_length
        return [slow(p.premise, p.hypothesis, max_length=MAX_LENGTH, padding="max_length", truncation=True)
                for p in slow_pairs]

    timings = {"korpair": [], "hf_datasets_map": [], "slow_per_example": [], "rust_tokenizer_only": []}
    for _ in range(spec["repeats"]):
        for name, fn in (("korpair", run_korpair), ("hf_datasets_map", run_hf), ("rust_tokenizer_only", run_rust_only)):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        run_slow()
        # per-pair cost times the corpus size: the slow loop is linear in the number of pairs
        timings["slow_per_example"].append((time.perf_counter() - start) * len(pairs) / len(slow_pairs))
    cache_dir = Path(tempfile.mkdtemp(dir=root, prefix="features-"))
    start = time.perf_counter()
    encode_pairs_cached(tokenizer, pairs, labels, MAX_LENGTH, cache_dir)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    encode_pairs_cached(tokenizer, pairs, labels, MAX_LENGTH, cache_dir)
    warm = time.perf_counter() - start

    fast_ids = run_korpair()
    call = tokenizer([p.premise for p in pairs], [p.hypothesis for p in pairs], truncation=True, max_length=MAX_LENGTH)
    assert fast_ids.input_ids.tolist() == list(itertools.chain.from_iterable(call["input_ids"])), \
        "korpair must give the tokenizer call's ids"
    same = sum(
        list(fast_ids[i]["input_ids"]) == [t for t in s["input_ids"] if t != tokenizer.pad_token_id]
        for i, s in enumerate(run_slow())
    )
    return {"pairs": len(pairs), "seconds": timings, "cache_cold_s": cold, "cache_hit_s": warm,
            "slow_pairs_timed": len(slow_pairs), "slow_same_ids": same / len(slow_pairs),
            "distinct_texts": len(distinct)}


def train_flops(lengths: list[int], wl: dict) -> float:
    """Training FLOPs of the model on pairs of these real lengths: 3x the forward pass."""
    h, ff, layers = wl["hidden"], wl["ff"], wl["layers"]
    forward = 0.0
    for n in lengths:
        # Q, K, V, output projections + feed-forward (2 FLOPs per multiply-add), then QK^T and AV
        forward += layers * (8 * h * h * n + 4 * h * ff * n + 4 * n * n * h) + 2 * h * h + 2 * h * len(LABELS)
    return 3 * forward


class _BatchLog:
    """Timestamps after each optimizer step, and the shape and real tokens of each batch."""

    def __init__(self) -> None:
        self.step_end: list[float] = []
        self.ticks: list[tuple[int, int]] = []
        self.lengths: list[list[int]] = []
        self.padded: list[int] = []

    def end_step(self) -> None:
        self.step_end.append(time.perf_counter())
        self.ticks.append(cpu_ticks())

    def record_batch(self, attention_mask) -> None:
        self.lengths.append(attention_mask.sum(dim=1).tolist())
        self.padded.append(attention_mask.numel())

    def summary(self, wl: dict, steps: int) -> dict:
        lengths, padded = self.lengths[:steps], self.padded[:steps]
        window = slice(SKIP_STEPS, steps)
        elapsed = self.step_end[steps - 1] - self.step_end[SKIP_STEPS - 1]
        samples = sum(len(b) for b in lengths[window])
        real = sum(sum(b) for b in lengths[window])
        flops = train_flops([n for b in lengths[window] for n in b], wl)
        return {
            "steps": len(self.step_end), "window_steps": steps - SKIP_STEPS, "window_s": elapsed,
            "others_cpu": others_cpu_share(self.ticks[SKIP_STEPS - 1], self.ticks[steps - 1], elapsed),
            "samples_per_s": samples / elapsed, "tokens_per_s": real / elapsed,
            "padded_tokens_per_s": sum(padded[window]) / elapsed,
            "padding_efficiency": real / sum(padded[window]), "model_gflops_per_s": flops / elapsed / 1e9,
            "step_s": elapsed / (steps - SKIP_STEPS),
        }


def worker_train_korpair(spec: dict) -> dict:
    """``korpair.train``'s own ``fit``, timed from outside through its callbacks seam."""
    import lightning as L
    import torch

    from korpair.config import TrainConfig
    from korpair.hardware import resolve_precision
    from korpair.training import fit

    root, wl = Path(spec["root"]), WORKLOADS[spec["workload"]]
    out = Path(tempfile.mkdtemp(dir=root, prefix=f"korpair-{spec['workload']}-"))
    cfg = TrainConfig.from_dict({
        "corpus": {"name": "files", "train_file": str(root / "train.jsonl"),
                   "validation_file": str(root / "validation.jsonl"), "labels": list(LABELS)},
        "model": {"name_or_path": str(root / spec["workload"] / "init")},
        "data": {"max_seq_length": MAX_LENGTH, "batch_size": BATCH, "eval_batch_size": EVAL_BATCH,
                 "cache_dir": str(out / "cache")},
        "optim": {"lr": wl["lr"], "warmup_steps": spec["warmup_steps"]},
        "trainer": {"output_dir": str(out / "run"), "seed": spec["seed"], "max_steps": spec["steps"],
                    "max_epochs": 1000, "progress_bar": False},
    }).with_overrides(spec["overrides"])

    log = _BatchLog()
    profile_rows = spec.get("profile_steps", 0)

    class Clock(L.Callback):
        """Per-step times (the throughput window) and the length of the last validation (fit's final one)."""

        def __init__(self) -> None:
            self.prof = None
            self.profile_table = None
            self.eval_s = 0.0
            self._eval_start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            log.record_batch(batch["attention_mask"])
            if profile_rows and batch_idx == SKIP_STEPS:
                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.prof.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            log.end_step()
            if self.prof is not None and batch_idx == SKIP_STEPS + profile_rows - 1:
                self.prof.__exit__(None, None, None)
                self.profile_table = profile_summary(self.prof, profile_rows)
                self.prof = None

        def on_validation_epoch_start(self, trainer, pl_module) -> None:
            self._eval_start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            self.eval_s = time.perf_counter() - self._eval_start

    clock = Clock()
    start = time.perf_counter()
    # The whole run as users get it: sanity check, checkpoints, final validation, export, plots.
    result = fit(cfg, callbacks=[clock])
    train_wall = time.perf_counter() - start
    metrics = result.metrics
    n_validation = metrics["validation_pairs"]
    summary = {**log.summary(wl, spec["steps"]), "train_wall_s": train_wall, "val_loss": metrics["val_loss"],
               "val_accuracy": metrics["val_accuracy"], "eval_s": clock.eval_s,
               "eval_pairs_per_s": n_validation / clock.eval_s if clock.eval_s else None,
               "precision": resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)[0],
               "profile": clock.profile_table}
    if spec.get("export_to"):
        shutil.copytree(result.model_dir, spec["export_to"], dirs_exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    return summary


def worker_train_hf(spec: dict) -> dict:
    """The idiomatic Hugging Face recipe: datasets.map, DataCollatorWithPadding, Trainer."""
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
    root, wl, system = Path(spec["root"]), WORKLOADS[spec["workload"]], SYSTEMS[spec["system"]]
    init = root / spec["workload"] / "init"
    out = Path(tempfile.mkdtemp(dir=root, prefix=f"hf-{spec['workload']}-"))
    tokenizer = AutoTokenizer.from_pretrained(init)
    model = AutoModelForSequenceClassification.from_pretrained(init)
    label2id = model.config.label2id
    raw = datasets.load_dataset("json", data_files={"train": str(root / "train.jsonl"),
                                                     "validation": str(root / "validation.jsonl")})

    def tokenize(batch):
        enc = tokenizer(batch["premise"], batch["hypothesis"], truncation=True, max_length=MAX_LENGTH)
        enc["label"] = [label2id[name] for name in batch["label"]]
        return enc

    encoded = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names, load_from_cache_file=False)
    log = _BatchLog()
    collator = DataCollatorWithPadding(tokenizer)

    def counting_collator(features):
        # Batches are collated in this process (no loader workers), in step order.
        batch = collator(features)
        if len(log.lengths) < spec["steps"]:
            log.record_batch(batch["attention_mask"])
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:
            log.end_step()

    args = TrainingArguments(
        output_dir=str(out), use_cpu=True, seed=spec["seed"], max_steps=spec["steps"],
        per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
        learning_rate=wl["lr"], weight_decay=0.01, warmup_steps=spec["warmup_steps"], lr_scheduler_type="linear",
        bf16=system["bf16"], train_sampling_strategy="group_by_length" if system["group_by_length"] else "random",
        save_strategy="no", report_to="none", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                      data_collator=counting_collator, processing_class=tokenizer, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    train_wall = time.perf_counter() - start
    start = time.perf_counter()
    metrics = trainer.evaluate()
    eval_s = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return {**log.summary(wl, spec["steps"]), "train_wall_s": train_wall, "val_loss": float(metrics["eval_loss"]),
            "eval_s": eval_s, "eval_pairs_per_s": len(encoded["validation"]) / eval_s,
            "precision": "bf16-mixed" if system["bf16"] else "32"}


def profile_summary(prof, steps: int) -> dict:
    """Where the step time went: GEMM kernels against everything else, and the top ops by self time."""
    events = prof.key_averages()
    gemm_names = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn", "onednn", "aten::_mkl")
    total = sum(e.self_cpu_time_total for e in events)
    gemm = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in gemm_names))
    table = events.table(sort_by="self_cpu_time_total", row_limit=25)
    return {"steps": steps, "self_cpu_ms_per_step": total / 1000 / steps,
            "gemm_share": gemm / total if total else None, "table": table}


def worker_export(spec: dict) -> dict:
    """ONNX fp32 and int8 folders of a model, and how long each export took."""
    from korpair.inference.onnx import export_onnx

    model_dir = Path(spec["model_dir"])
    times = {}
    for name, quantize in (("onnx", False), ("onnx-int8", True)):
        start = time.perf_counter()
        export_onnx(model_dir, model_dir.parent / name, quantize=quantize)
        times[name] = time.perf_counter() - start
    return {"export_s": times}


def worker_infer(spec: dict) -> dict:
    """Pairs/s on W2: Predictor on PyTorch (fp32, bf16) and on ONNX (fp32, int8) at batch 64 vs pipeline()."""
    from transformers import pipeline

    from korpair.corpora import read_pairs
    from korpair.inference import Predictor

    root = Path(spec["root"])
    model_dir = root / "W2" / "init"
    pairs = read_pairs(root / "all.jsonl")[: spec["pairs"]]
    warm = pairs[:16]
    systems = {
        "pipeline (default, batch 1)": lambda: pipeline("text-classification", model=str(model_dir), device="cpu"),
        "pipeline (batch 64)": lambda: pipeline("text-classification", model=str(model_dir), device="cpu"),
        "Predictor fp32": lambda: Predictor.from_pretrained(model_dir, device="cpu", max_seq_length=MAX_LENGTH),
        "Predictor bf16": lambda: Predictor.from_pretrained(model_dir, device="cpu", max_seq_length=MAX_LENGTH,
                                                            precision="bf16"),
        "ONNX fp32": lambda: Predictor.from_pretrained(root / "W2" / "onnx", device="cpu", max_seq_length=MAX_LENGTH),
        "ONNX int8": lambda: Predictor.from_pretrained(root / "W2" / "onnx-int8", device="cpu",
                                                       max_seq_length=MAX_LENGTH),
    }
    out = {}
    ticks, started = cpu_ticks(), time.perf_counter()
    for name, load in systems.items():
        predictor = load()
        if name.startswith("pipeline"):
            inputs = [{"text": p.premise, "text_pair": p.hypothesis} for p in pairs]
            kwargs = {"batch_size": INFER_BATCH} if "64" in name else {}
            run = lambda xs, predictor=predictor, kwargs=kwargs: predictor(xs, top_k=None, **kwargs)  # noqa: E731
            warm_inputs = inputs[:16]
        else:
            inputs, warm_inputs = pairs, warm
            run = lambda xs, predictor=predictor: predictor.predict(xs, batch_size=INFER_BATCH)  # noqa: E731
        run(warm_inputs)
        start = time.perf_counter()
        run(inputs)
        out[name] = len(pairs) / (time.perf_counter() - start)
        del predictor
    return {"pairs": len(pairs), "pairs_per_s": out,
            "others_cpu": others_cpu_share(ticks, cpu_ticks(), time.perf_counter() - started)}


def worker_agreement(spec: dict) -> dict:
    """Labels and probabilities of ONNX fp32 and int8 against PyTorch on every dev pair."""
    import numpy as np

    from korpair.corpora import read_pairs
    from korpair.inference import Predictor

    model_dir = Path(spec["model_dir"])
    pairs = read_pairs(Path(spec["root"]) / "all.jsonl")
    reference = Predictor.from_pretrained(model_dir, max_seq_length=MAX_LENGTH).predict_proba(pairs, INFER_BATCH)
    out = {"pairs": len(pairs)}
    for name in ("onnx", "onnx-int8"):
        probs = Predictor.from_pretrained(model_dir.parent / name, max_seq_length=MAX_LENGTH).predict_proba(
            pairs, INFER_BATCH)
        out[name] = {"label_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
                     "max_abs_prob_diff": float(np.abs(probs - reference).max())}
    # how decisive the reference is: near-ties flip under any rounding
    top2 = np.sort(reference, axis=1)[:, -2:]
    out["median_top2_margin"] = float(np.median(top2[:, 1] - top2[:, 0]))
    return out


WORKERS = {"prepare": worker_prepare, "peak": worker_peak, "encode": worker_encode,
           "train-korpair": worker_train_korpair, "train-hf": worker_train_hf, "export": worker_export,
           "infer": worker_infer, "agreement": worker_agreement}


# ------------------------------------------------------------------ the suite


def plan(args: argparse.Namespace) -> dict:
    """Step counts and sizes for this run (--quick shrinks everything)."""
    quick = args.quick
    steps = {"W1": args.w1_steps or (12 if quick else 84), "W2": args.w2_steps or (3 if quick else 8)}
    return {
        "repeats": args.repeats or (1 if quick else 3),
        "steps": steps,
        "warmup_steps": {k: max(1, v // 10) for k, v in steps.items()},
        "validation_pairs": 32 if quick else VALIDATION_PAIRS,
        "infer_pairs": 192,  # 3 batches of 64: one batch is mostly the cost of its first, longest shape
        "inference": not args.skip_inference and not quick,
        "slow_pairs": 200 if quick else 1000,
        "encode_repeats": 3 if quick else 5,
        "peak_seconds": 0.5 if quick else 1.5,
        "profile_steps": 0 if quick or args.no_profile else 3,
        "workloads": args.workloads,
        "systems": args.systems,
        "seed": args.seed,
    }


def run_suite(args: argparse.Namespace) -> dict:
    p = plan(args)
    root = Path(tempfile.mkdtemp(prefix="korpair-bench-train-"))
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(root / "hf"),
           "HF_DATASETS_CACHE": str(root / "hf" / "datasets"), "KORPAIR_HOME": str(root / "korpair"),
           "PYTHONWARNINGS": "ignore"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    started = time.perf_counter()

    waiting = {"seconds": 0.0}

    def work(task: str, timeout_s: float = 1200, timed: bool = True, **spec) -> dict:
        """Run a worker. A timed one waits for a quiet machine first (within the --max-wait budget), and
        is run again (up to --retries times) when other processes took more than --max-others of the
        CPU during its measurement; the cleanest run is kept."""
        tries = []
        while True:
            if timed:
                budget = max(0.0, args.max_wait - waiting["seconds"])
                waiting["seconds"] += wait_for_quiet(args.max_others, min(budget, 120.0)) if budget else 0.0
            t0 = time.perf_counter()
            result = run_worker(HERE, {"task": task, "root": str(root), **spec}, timeout_s, env)
            others = result.get("others_cpu")
            shown = f"{result['samples_per_s']:.2f} samples/s, " if "samples_per_s" in result else ""
            print(f"  {task} {spec.get('workload', '')} {spec.get('system', '')}: {time.perf_counter() - t0:.0f} s, "
                  f"{shown}load {result['load_1min']}"
                  + (f", others' CPU {others:.0%}" if others is not None else ""), flush=True)
            tries.append(result)
            if others is None or others <= args.max_others or len(tries) > args.retries:
                break
        best = min(tries, key=lambda r: r.get("others_cpu") or 0.0)
        best["tries"] = len(tries)
        return best

    try:
        print(f"korpair training benchmark: {json.dumps(p)}", flush=True)
        prep = work("prepare", timed=False, data=str(args.data), validation_pairs=p["validation_pairs"],
                    seed=p["seed"])
        peaks = [work("peak", seconds=p["peak_seconds"])]
        encode = work("encode", repeats=p["encode_repeats"], slow_pairs=p["slow_pairs"])
        if "W2" in p["workloads"] and p["inference"]:
            exports = work("export", timed=False, model_dir=str(root / "W2" / "init"))
        runs: list[dict] = []
        inference: list[dict] = []
        agreement_model = root / "W1-trained" / "model"
        systems = [s for s in SYSTEMS if s in p["systems"]]
        for r in range(p["repeats"]):
            for wl in p["workloads"]:
                # rotate the order each repeat: no system always runs first (or after the slowest)
                order = systems[r % len(systems):] + systems[: r % len(systems)]
                for name in order:
                    spec = {"workload": wl, "system": name, "seed": p["seed"] + r, "steps": p["steps"][wl],
                            "warmup_steps": p["warmup_steps"][wl]}
                    if SYSTEMS[name]["kind"] == "korpair":
                        spec["overrides"] = SYSTEMS[name]["overrides"]
                        if wl == "W1" and name == "korpair default" and r == 0:
                            spec["export_to"] = str(agreement_model)
                        result = work("train-korpair", **spec)
                    else:
                        result = work("train-hf", **spec)
                    runs.append({"repeat": r, "workload": wl, "system": name, **result})
            if "W2" in p["workloads"] and p["inference"]:
                inference.append(work("infer", pairs=p["infer_pairs"]))
        profile = None
        if p["profile_steps"] and "W2" in p["workloads"]:
            # its own short run: the profiler's overhead stays out of the timed runs
            profile = work("train-korpair", workload="W2", system="korpair default", seed=p["seed"],
                           steps=SKIP_STEPS + p["profile_steps"], warmup_steps=1,
                           overrides=SYSTEMS["korpair default"]["overrides"], profile_steps=p["profile_steps"])["profile"]
        agreement = None
        if agreement_model.is_dir() and not args.skip_onnx:
            work("export", timed=False, model_dir=str(agreement_model))
            agreement = work("agreement", timed=False, model_dir=str(agreement_model))
        peaks.append(work("peak", seconds=p["peak_seconds"]))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    peak = {k: max(x[k] for x in peaks) for k in ("fp32", "bf16")}
    return {"plan": p, "prepare": prep, "peak_gflops": peak, "peak_runs": peaks, "encode": encode,
            "onnx_export": exports if "W2" in p["workloads"] and p["inference"] else None,
            "train": runs, "inference": inference, "onnx_agreement": agreement, "profile": profile,
            "max_others": args.max_others, "retries": args.retries, "waited_s": round(waiting["seconds"], 1),
            "suite_seconds": round(time.perf_counter() - started, 1), "load_end": load_average()}


# ------------------------------------------------------------------ summaries


def summarise(raw: dict) -> dict:
    """Per-system spreads, korpair/HF ratios per repeat, MFU, encoding and inference ratios, targets."""
    peak = raw["peak_gflops"]
    for run in raw["train"]:
        # Every system trains on the same pairs, so an epoch takes (real tokens / tokens per second):
        # this is its samples/s over an epoch. The timed steps alone are biased for a short run, e.g.
        # HF's length-grouped sampler serves the longest batch first.
        run["epoch_samples_per_s"] = run["tokens_per_s"] / raw["prepare"]["mean_train_tokens"]
        run["mfu"] = run["model_gflops_per_s"] / peak["bf16" if run["precision"].startswith("bf16") else "fp32"]
        run["mfu_of_bf16_peak"] = run["model_gflops_per_s"] / peak["bf16"]
    by = {}
    for run in raw["train"]:
        by.setdefault((run["workload"], run["system"]), []).append(run)
    systems = {}
    for (wl, name), runs in by.items():
        systems.setdefault(wl, {})[name] = {
            key: spread([r[key] for r in runs]) for key in (
                "samples_per_s", "epoch_samples_per_s", "tokens_per_s", "padding_efficiency", "model_gflops_per_s", "mfu",
                "mfu_of_bf16_peak", "eval_pairs_per_s", "val_loss", "peak_rss_mib", "load_1min", "others_cpu")
        }
    ratios = {}
    for wl in systems:
        for a, b in PAIRS_OF_RATIOS:
            if (wl, a) not in by or (wl, b) not in by:
                continue
            repeats = sorted({r["repeat"] for r in by[(wl, a)]} & {r["repeat"] for r in by[(wl, b)]})
            pick = lambda name, rep, key: next(x[key] for x in by[(wl, name)] if x["repeat"] == rep)  # noqa: E731
            ratios.setdefault(wl, {})[f"{a} / {b}"] = {
                "samples_per_s": spread([pick(a, rep, "epoch_samples_per_s") / pick(b, rep, "epoch_samples_per_s")
                                         for rep in repeats]),
                "eval_pairs_per_s": spread([pick(a, rep, "eval_pairs_per_s") / pick(b, rep, "eval_pairs_per_s")
                                            for rep in repeats]),
                "val_loss_diff": spread([pick(a, rep, "val_loss") - pick(b, rep, "val_loss") for rep in repeats], 4),
            }
    enc = raw["encode"]["seconds"]
    encoding = {
        "seconds": {k: spread(v, 4) for k, v in enc.items()},
        "korpair_vs_hf_map": spread([h / k for k, h in zip(enc["korpair"], enc["hf_datasets_map"])]),
        "korpair_vs_slow_loop": spread([s / k for k, s in zip(enc["korpair"], enc["slow_per_example"])], 1),
        "rust_only_vs_slow_loop": spread([s / k for k, s in zip(enc["rust_tokenizer_only"],
                                                                 enc["slow_per_example"])], 1),
        "rust_share_of_korpair": spread([r / k for k, r in zip(enc["korpair"], enc["rust_tokenizer_only"])], 2),
    }
    inference = None
    if raw["inference"]:
        names = raw["inference"][0]["pairs_per_s"]
        base = "pipeline (default, batch 1)"
        inference = {
            "pairs_per_s": {n: spread([x["pairs_per_s"][n] for x in raw["inference"]], 1) for n in names},
            "vs_pipeline": {n: spread([x["pairs_per_s"][n] / x["pairs_per_s"][base] for x in raw["inference"]], 2)
                            for n in names if n != base},
        }
    return {"systems": systems, "ratios": ratios, "encoding": encoding, "inference": inference,
            "targets": targets(systems, ratios, encoding, inference, raw)}


def targets(systems, ratios, encoding, inference, raw) -> list[dict]:
    """The issue's targets, each with the measured median and whether it was met."""
    out = []

    def add(name, value, goal, met=None):
        out.append({"target": name, "measured": value, "goal": goal,
                    "met": (value is not None and value >= goal) if met is None else met})

    add("encoding: korpair / HF datasets.map", encoding["korpair_vs_hf_map"]["median"], 1.0)
    add("encoding: korpair / per-example Python tokenizer", encoding["korpair_vs_slow_loop"]["median"], 20.0)
    w2 = ratios.get("W2", {})
    if "korpair default / HF default" in w2:
        add("W2 train samples/s: korpair default / HF default", w2["korpair default / HF default"]
            ["samples_per_s"]["median"], 2.0)
    if "korpair default / HF best" in w2:
        add("W2 train samples/s: korpair default / HF best", w2["korpair default / HF best"]["samples_per_s"]
            ["median"], 1.2)
    default = systems.get("W2", {}).get("korpair default")
    if default:
        add("W2 MFU of korpair default, against the bf16 matmul peak", default["mfu_of_bf16_peak"]["median"], 0.35)
    if inference:
        vs = inference["vs_pipeline"]
        fastest = max(vs, key=lambda n: vs[n]["median"])
        add(f"W2 inference: {fastest} / pipeline", vs[fastest]["median"], 3.0)
        add("W2 inference: Predictor bf16 / pipeline", vs["Predictor bf16"]["median"], 3.0)
    if raw["onnx_agreement"]:
        add("ONNX fp32 label agreement with PyTorch", raw["onnx_agreement"]["onnx"]["label_agreement"], 0.995)
        add("ONNX int8 label agreement with PyTorch", raw["onnx_agreement"]["onnx-int8"]["label_agreement"], 0.98)
    return out


def bf16_hardware(isa: dict) -> str:
    if isa["amx_bf16"]:
        return "bf16 matmuls on AMX"
    return "no AMX: bf16 matmuls on AVX512-BF16" if isa["avx512_bf16"] else "no native bf16"


def write_report(raw: dict, summary: dict, info: dict, out_dir: Path, quick: bool) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    p, peak = raw["plan"], raw["peak_gflops"]
    lines = [
        "# korpair training benchmark" + (" (--quick)" if quick else ""), "",
        "Command: `python benchmarks/bench_train.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:]) + "`", "",
        f"Machine: {info['cpu']}, {info['cores']} cores, ISA {', '.join(k for k, v in info['isa'].items() if v)}"
        f" ({bf16_hardware(info['isa'])}); "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".",
        f"Measured matmul peak: fp32 {peak['fp32']} GFLOP/s, bf16 {peak['bf16']} GFLOP/s (best of the suite's "
        f"start and end). Suite time {raw['suite_seconds']:.0f} s, load average at the end {raw.get('load_end', load_average())}.",
        "",
        f"Data: KLUE-NLI dev, {raw['prepare']['train_pairs']} train / {raw['prepare']['validation_pairs']} "
        f"validation pairs, WordPiece vocab {raw['prepare']['vocab']}, max length {MAX_LENGTH}, batch {BATCH}. "
        f"Steps: W1 {p['steps']['W1']}, W2 {p['steps']['W2']} (warmup {p['warmup_steps']}); "
        f"{p['repeats']} repeat(s), seed {p['seed']}+repeat. Spreads are min / **median** / max over repeats.",
        "",
        "Other engineers' jobs share this machine: \"others' CPU\" is the fraction of the cores that other "
        "processes used during a run's timed steps (from /proc/stat). A run above "
        f"{raw['max_others']:.0%} was rerun (up to {raw['retries']} times) and the cleanest kept; "
        f"{sum(r['tries'] - 1 for r in raw['train'])} reruns in all, {raw['waited_s']:.0f} s spent waiting for "
        "a quiet machine. Throughput leaves out the first 2 steps; "
        "model FLOPs count real tokens only (3x the forward pass, attention included).",
        "",
        "## Training", "",
    ]
    rows = []
    for wl, systems in summary["systems"].items():
        for name, s in systems.items():
            rows.append([wl, name, fmt_spread(s["epoch_samples_per_s"]), s["samples_per_s"]["median"],
                         fmt_spread(s["tokens_per_s"]),
                         s["padding_efficiency"]["median"], fmt_spread(s["model_gflops_per_s"]),
                         f"{s['mfu']['median']:.1%}", f"{s['mfu_of_bf16_peak']['median']:.1%}",
                         fmt_spread(s["eval_pairs_per_s"]), fmt_spread(s["val_loss"]),
                         s["peak_rss_mib"]["max"], f"{s['others_cpu']['max']:.0%}"])
    lines.append(md_table(["workload", "system", "train samples/s (epoch)", "samples/s (timed steps)",
                           "real tokens/s", "pad eff.", "model GFLOP/s", "MFU (own precision)", "MFU vs bf16 peak",
                           "eval pairs/s", "val loss", "peak RSS MiB", "others' CPU (max)"], rows,
                          "llrrrrrrrrrrr"))
    lines += ["", "Train samples/s (epoch) = real tokens/s / the mean tokens of a training pair "
              f"({raw['prepare']['mean_train_tokens']:.1f}): every system trains on the same pairs, so this is its "
              "rate over an epoch; the timed steps alone favour whoever drew short batches first (HF's length-grouped "
              "sampler serves the longest batch first).", ""]
    short = {wl: n - 2 for wl, n in p["steps"].items() if wl in p["workloads"] and n - 2 < 50}
    if short and "HF best" in p["systems"]:
        lines += ["Both rates lean on the timed window for HF best when it is shorter than 50 steps ("
                  + ", ".join(f"{wl}: {n}" for wl, n in short.items()) + "): its sampler sorts megabatches of 50 "
                  "batches by length and serves each longest first, so a short window holds HF's longer batches, "
                  "whose tokens/s is higher (bigger matmuls) and whose samples/s is lower. `--w2-steps 52` times a "
                  "whole megabatch.", ""]
    lines += ["### korpair / HF ratios (per repeat, same seed)", ""]
    rows = []
    for wl, pairs in summary["ratios"].items():
        for label, r in pairs.items():
            rows.append([wl, label, fmt_spread(r["samples_per_s"], "x"), fmt_spread(r["eval_pairs_per_s"], "x"),
                         fmt_spread(r["val_loss_diff"])])
    lines.append(md_table(["workload", "korpair / HF", "train samples/s (epoch)", "eval pairs/s",
                           "val loss difference"], rows, "llrrr"))
    enc = summary["encoding"]
    lines += ["", "## Encoding", "",
              f"{raw['encode']['pairs']} pairs, max length {MAX_LENGTH}. The per-example loop uses transformers' "
              f"Python tokenizer (`BertTokenizerLegacy`, v5's slow BertTokenizer) with the same vocabulary, one "
              f"pair per call padded to {MAX_LENGTH} as ratsnlp does; it was timed on "
              f"{raw['encode']['slow_pairs_timed']} pairs and scaled to the corpus; its ids match the fast "
              f"tokenizer's on {raw['encode']['slow_same_ids']:.1%} of the pairs.", ""]
    lines.append(md_table(["method", "seconds (min / median / max)"],
                          [[k, fmt_spread(v)] for k, v in enc["seconds"].items()]
                          + [["korpair, cached (cold write / hit)",
                              f"{raw['encode']['cache_cold_s']:.3f} / {raw['encode']['cache_hit_s']:.4f}"]], "lr"))
    lines += ["", f"korpair / HF datasets.map: {fmt_spread(enc['korpair_vs_hf_map'], 'x')}; "
              f"korpair / per-example loop: {fmt_spread(enc['korpair_vs_slow_loop'], 'x')}. "
              f"korpair tokenizes each of the {raw['encode']['distinct_texts']} distinct sentences once; "
              "`rust_tokenizer_only` is the HF tokenizers (Rust) call on those sentences alone, the floor of any "
              f"encoder built on it: {fmt_spread(enc['rust_share_of_korpair'])} of korpair's time, and "
              f"{fmt_spread(enc['rust_only_vs_slow_loop'], 'x')} the per-example loop at best."]
    if summary["inference"]:
        inf = summary["inference"]
        lines += ["", "## Inference (W2, random weights)", "",
                  f"{raw['inference'][0]['pairs']} pairs; korpair at batch {INFER_BATCH} (length-sorted); "
                  "the pipeline with its default (one pair per forward) and at batch 64. Others' CPU during the "
                  "runs: " + ", ".join(f"{x['others_cpu']:.0%}" for x in raw["inference"]) + ".", ""]
        lines.append(md_table(["system", "pairs/s", "/ pipeline default"],
                              [[n, fmt_spread(v), fmt_spread(inf["vs_pipeline"].get(n, {"median": None}), "x")
                                if n in inf["vs_pipeline"] else "1x"] for n, v in inf["pairs_per_s"].items()],
                              "lrr"))
        if raw["onnx_export"]:
            lines += ["", "ONNX export of W2: " + ", ".join(f"{k} {v:.0f} s" for k, v in
                                                             raw["onnx_export"]["export_s"].items()) + "."]
    if raw["onnx_agreement"]:
        ag = raw["onnx_agreement"]
        lines += ["", "## ONNX agreement (W1 trained by the suite, all dev pairs)", "",
                  md_table(["model", "label agreement", "max |prob diff|"],
                           [[k, f"{ag[k]['label_agreement']:.2%}", f"{ag[k]['max_abs_prob_diff']:.2e}"]
                            for k in ("onnx", "onnx-int8")], "lrr"),
                  "", f"{ag['pairs']} pairs; median margin between the top two probabilities: "
                  f"{ag['median_top2_margin']:.3f}."]
    lines += ["", "## Targets", ""]
    lines.append(md_table(["target", "measured (median)", "goal", "met"],
                          [[t["target"], _fmt_num(t["measured"], t["goal"]), _fmt_num(t["goal"], t["goal"]),
                            "yes" if t["met"] else "**no**"]
                           for t in summary["targets"]], "lrrl"))
    profile = raw["profile"]
    if profile:
        lines += ["", "## Profile (W2, korpair default, steady-state steps)", "",
                  f"{profile['steps']} steps, {profile['self_cpu_ms_per_step']:.0f} ms self CPU time per step "
                  f"(ops' self time on the training thread), GEMM kernels {profile['gemm_share']:.0%} of it. Full table: "
                  "train_profile.txt."]
        (out_dir / "train_profile.txt").write_text(profile["table"] + "\n", encoding="utf-8")
    text = "\n".join(lines) + "\n"
    (out_dir / "train.md").write_text(text, encoding="utf-8")
    for run in raw["train"]:
        run.pop("profile", None)
    if profile:
        profile.pop("table")
    (out_dir / "train.json").write_text(json.dumps({"machine": info, "summary": summary, "raw": raw}, indent=2,
                                                   ensure_ascii=False) + "\n", encoding="utf-8")
    return text


def _fmt_num(x, goal) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1%}" if goal < 1.0 else f"{x:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="few steps and pairs, one repeat, no W2 inference (about 3 minutes)")
    parser.add_argument("--repeats", type=int, help="repeats of every training run (default 3, quick 1)")
    parser.add_argument("--w1-steps", type=int, help="optimizer steps of W1 (default 84 = one epoch, quick 12)")
    parser.add_argument("--w2-steps", type=int, help="optimizer steps of W2 (default 8, quick 3)")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--skip-inference", action="store_true", help="no inference and no W2 ONNX export")
    parser.add_argument("--skip-onnx", action="store_true", help="no ONNX agreement check")
    parser.add_argument("--no-profile", action="store_true", help="no torch.profiler table of W2")
    parser.add_argument("--max-others", type=float, default=0.15,
                        help="rerun a timed run when other processes took more than this fraction of the CPU")
    parser.add_argument("--retries", type=int, default=2, help="reruns of a disturbed run at most (default 2)")
    parser.add_argument("--max-wait", type=float, default=600,
                        help="seconds the whole suite may wait for other processes to go quiet (default 600)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the workers (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights; repeat r uses seed+r")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="KLUE-NLI dev JSON file")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for train.json / train.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        emit_result(WORKERS[spec["task"]](spec))
        return
    if not args.data.is_file():
        parser.error(f"{args.data}: no such file; pass --data PATH/klue-nli-v1.1_dev.json")
    raw = run_suite(args)
    summary = summarise(raw)
    print(write_report(raw, summary, machine_info(), args.results, args.quick))


if __name__ == "__main__":
    main()
