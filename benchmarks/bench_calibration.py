"""Calibration and votes on real Korean NLI: how over-confident a model is, what the fitted temperature buys,
and what training on the annotators' votes (corpus.soft_labels) changes where they disagreed.

KLUE-NLI dev (3,000 pairs, ../shared/data) split by a fixed shuffle into
training (2,400), validation (300: the temperature is fitted here, and the
best checkpoint picked) and a held-out test part (300: everything reported is
measured here, on pairs neither training nor calibration saw). The model is
the from-scratch BERT of the `sample` preset trained for several epochs, the
over-fitting case calibration is for. Reported: accuracy (a temperature changes
no label), expected calibration error (15 bins), Brier score and NLL on the
test part, without and with the temperature, for a few seeds; then, for the
same seeds, hard labels against soft labels (the five votes' distribution) on
the test pairs whose annotators split: accuracy and the Jensen-Shannon
divergence between the model's probabilities and the vote shares.

Second, a model that does learn: the `demo` preset (from-scratch BERT on korpair's generated corpus, test
accuracy about 0.8), its temperature fitted on the demo validation split and measured on the held-out test
split.

    python benchmarks/bench_calibration.py               # 3 seeds x hard/soft, 8 epochs, and demo: ~20 min on 2 cores
    python benchmarks/bench_calibration.py --seeds 1 --epochs 3 --no-demo

Writes benchmarks/results/calibration.json and calibration.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine_info, md_table  # noqa: E402

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "klue-nli" / "klue-nli-v1.1_dev.json"
SIZES = {"train": 2400, "validation": 300, "test": 300}


def split_files(data: Path, folder: Path) -> dict[str, Path]:
    votes = ("author", "label2", "label3", "label4", "label5")
    rows = [{"premise": r["premise"], "hypothesis": r["hypothesis"], "label": r["gold_label"],
             **{v: r[v] for v in votes}} for r in json.loads(data.read_text(encoding="utf-8"))]
    random.Random(0).shuffle(rows)
    files, start = {}, 0
    for split, n in SIZES.items():
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[start:start + n]),
                                encoding="utf-8")
        start += n
    return files


def one_seed(files: dict[str, Path], folder: Path, seed: int, epochs: int, soft: bool) -> dict:
    from korpair import api

    name = f"{'soft' if soft else 'hard'}-{seed}"
    run = api.train("sample", [f"corpus.train_file={files['train']}", f"corpus.validation_file={files['validation']}",
                               f"trainer.output_dir={folder / name}", f"trainer.seed={seed}",
                               f"trainer.max_epochs={epochs}", "trainer.progress_bar=false",
                               f"corpus.soft_labels={str(soft).lower()}", f"data.cache_dir={folder / 'cache'}"])
    report = api.evaluate(run.model_dir, files["test"], output_dir=folder / f"eval-{name}")
    cal, levels = report.metrics["calibration"], report.metrics["agreement"]["levels"]
    split = {k: v for k, v in levels.items() if k != "unanimous"}
    n = sum(v["pairs"] for v in split.values())
    return {"seed": seed, "labels": "soft" if soft else "hard", "temperature": cal["temperature"],
            "accuracy": report.metrics["accuracy"],
            "test": {"uncalibrated": cal["uncalibrated"], "calibrated": cal["calibrated"]},
            "split_votes": {"pairs": n, "accuracy": sum(v["accuracy"] * v["pairs"] for v in split.values()) / n,
                            "js_divergence": sum(v["js_divergence"] * v["pairs"] for v in split.values()) / n},
            "validation": run.metrics["calibration"]}


def demo_run(folder: Path) -> dict:
    from korpair import api

    run = api.train("demo", [f"trainer.output_dir={folder / 'demo'}", "trainer.progress_bar=false",
                             f"data.cache_dir={folder / 'cache'}"])
    report = api.evaluate(run.model_dir, split="test", output_dir=folder / "eval-demo")
    cal = report.metrics["calibration"]
    return {"accuracy": report.metrics["accuracy"], "pairs": report.metrics["n"], "temperature": cal["temperature"],
            "test": {"uncalibrated": cal["uncalibrated"], "calibrated": cal["calibrated"]},
            "validation": run.metrics["calibration"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-demo", dest="demo", action="store_false", help="leave out the demo workload")
    parser.add_argument("--demo-only", action="store_true",
                        help="run the demo workload only, keeping the KLUE runs of the previous calibration.json")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: KLUE-NLI dev not found (see ../shared/data)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo_only:
            previous = json.loads((args.out / "calibration.json").read_text(encoding="utf-8"))
            runs, args.epochs = previous["runs"], previous["epochs"]
        else:
            files = split_files(args.data, Path(tmp))
            runs = [one_seed(files, Path(tmp), seed, args.epochs, soft) for soft in (False, True)
                    for seed in range(1, args.seeds + 1)]
        demo = demo_run(Path(tmp)) if args.demo or args.demo_only else None
    result = {"machine": machine_info(), "data": str(args.data.name), "sizes": SIZES, "epochs": args.epochs,
              "model": "sample preset (from-scratch BERT, 4 x 256)", "runs": runs, "demo": demo}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rows = [[r["labels"], str(r["seed"]), f"{r['temperature']:.2f}", f"{r['accuracy']:.3f}"]
            + [f"{r['test'][side][k]:.3f}" for k in ("ece", "brier", "nll") for side in ("uncalibrated", "calibrated")]
            + [f"{r['split_votes']['accuracy']:.3f}", f"{r['split_votes']['js_divergence']:.3f}"] for r in runs]
    table = md_table(["labels", "seed", "T", "test accuracy", "ECE raw", "ECE T", "Brier raw", "Brier T", "NLL raw",
                      "NLL T", "split-vote accuracy", "split-vote JS"], rows, align="llrrrrrrrrrr")
    text = (f"# Calibration on KLUE-NLI dev ({SIZES['train']} train / {SIZES['validation']} validation / "
            f"{SIZES['test']} held-out test pairs)\n\n{result['model']}, {args.epochs} epochs; the temperature T is "
            f"fitted on the validation part, every number below is measured on the held-out test part. Split-vote: "
            f"the {runs[0]['split_votes']['pairs']} test pairs whose five annotators did not all agree; JS: "
            f"Jensen-Shannon divergence (base 2) between the model's calibrated probabilities and the vote "
            f"shares.\n\n{table}\n")
    if demo is not None:
        raw, cal = demo["test"]["uncalibrated"], demo["test"]["calibrated"]
        text += ("\n## A model that learns: the demo preset\n\n"
                 f"Test split of the demo corpus (held-out cells, {demo['pairs']} pairs), accuracy "
                 f"{demo['accuracy']:.3f}; temperature {demo['temperature']:.2f} fitted on the demo validation split."
                 "\n\n" + md_table(["", "ECE", "Brier", "NLL"],
                                    [["raw", *(f"{raw[k]:.3f}" for k in ("ece", "brier", "nll"))],
                                     ["temperature", *(f"{cal[k]:.3f}" for k in ("ece", "brier", "nll"))]]) + "\n")
    (args.out / "calibration.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
