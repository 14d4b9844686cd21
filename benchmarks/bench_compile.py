"""Does torch.compile pay for fine-tuning a BERT-base pair classifier? Eager against compiled, one process.

The training step of the suite's W2 workload (BERT 12 x 768, vocab 30000,
batch 32, bf16 autocast where the CPU computes in bf16, AdamW), on batches
whose lengths follow korpair's length-grouped batches: a few shapes, rounded
up to a multiple of 8 so that compiled graphs can be reused. Reports the
compile time (the first step at each new shape), the steady-state step time of
both, and the number of steps after which compiling has paid for itself.

    python benchmarks/bench_compile.py                 # CPU, about 5 minutes on 2 cores
    python benchmarks/bench_compile.py --device cuda   # on a GPU

Writes benchmarks/results/compile.json and compile.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from bench_common import load_average, machine_info, md_table  # noqa: E402

RESULTS = HERE.parent / "results"
LENGTHS = (32, 40, 48, 56)  # the shapes korpair's batches take on KLUE-NLI at max length 128, rounded to 8


def make_model(device: str):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, num_labels=3)
    return BertForSequenceClassification(config).to(device).train()


def batch(length: int, device: str, batch_size: int = 32) -> dict:
    import torch

    g = torch.Generator().manual_seed(length)
    mask = torch.ones(batch_size, length, dtype=torch.long)
    # length-grouped batches: most pairs fill the batch's length, a few are up to 7 tokens shorter
    mask[::4, length - 7:] = 0
    return {"input_ids": torch.randint(5, 30000, (batch_size, length), generator=g).to(device),
            "attention_mask": mask.to(device), "labels": torch.randint(0, 3, (batch_size,), generator=g).to(device)}


def run(mode: str, device: str, dtype_name: str, rounds: int) -> dict:
    import torch

    model = make_model(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)  # as korpair
    forward = torch.compile(model) if mode == "compiled" else model
    dtype = torch.bfloat16 if dtype_name == "bf16" else None

    def step(b):
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            loss = forward(**b).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device != "cpu":
            torch.cuda.synchronize()

    batches = {n: batch(n, device) for n in LENGTHS}
    first = {}
    for n in LENGTHS:  # the first step at each shape: compilation (or allocator warm-up, eager)
        start = time.perf_counter()
        step(batches[n])
        first[n] = time.perf_counter() - start
    times = {n: [] for n in LENGTHS}
    for _ in range(rounds):
        for n in LENGTHS:
            start = time.perf_counter()
            step(batches[n])
            times[n].append(time.perf_counter() - start)
    steady = statistics.mean(statistics.median(t) for t in times.values())
    return {"mode": mode, "first_step_s": first, "steady_step_s": steady,
            "warmup_s": sum(first.values()) - steady * len(LENGTHS)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per shape after the first")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    eager = run("eager", args.device, args.precision, args.rounds)
    compiled = run("compiled", args.device, args.precision, args.rounds)
    speedup = eager["steady_step_s"] / compiled["steady_step_s"]
    saved = eager["steady_step_s"] - compiled["steady_step_s"]
    extra = compiled["warmup_s"] - eager["warmup_s"]
    break_even = extra / saved if saved > 0 else None
    info = machine_info()
    device = info["cpu"] if args.device == "cpu" else args.device
    lines = [
        "# torch.compile for fine-tuning (BERT-base shape, batch 32)", "",
        f"Device: {device}, {info['cores']} cores; torch {info['versions']['torch']}, transformers "
        f"{info['versions']['transformers']}; precision {args.precision}; shapes {list(LENGTHS)}, "
        f"{args.rounds} timed steps each; load average at the end {load_average()}.", "",
        md_table(["mode", "compile / warm-up (s)", "steady step (s)"],
                 [[r["mode"], round(r["warmup_s"], 1), round(r["steady_step_s"], 3)] for r in (eager, compiled)],
                 "lrr"),
        "",
        f"Compiled / eager steady-state speed: {speedup:.2f}x. "
        + (f"Compiling pays for itself after {break_even:.0f} steps." if break_even is not None else
           "Compiling never pays for itself here: the compiled step is not faster."),
    ]
    text = "\n".join(lines) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "compile.md").write_text(text, encoding="utf-8")
    (args.results / "compile.json").write_text(json.dumps(
        {"machine": info, "device": args.device, "precision": args.precision, "eager": eager, "compiled": compiled,
         "speedup": speedup, "break_even_steps": break_even}, indent=2) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
