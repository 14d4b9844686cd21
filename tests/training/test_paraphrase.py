"""Paraphrase (two labels): the run reports the F1 of the second label and can pick its best checkpoint by it."""

from __future__ import annotations

import csv
import json

import pytest

from korpair import api
from korpair.inference import Predictor
from korpair.types import Pair
from tools.sample_sts import generate_sts_pairs

LABELS = ("different", "paraphrase")  # the second is the positive label
MODEL = ["model.from_scratch=true", "model.vocab_size=2000", "model.hidden_size=64", "model.num_layers=2",
         "model.num_heads=2", "model.intermediate_size=128", "model.dropout=0.0", "trainer.progress_bar=false"]


def write(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def paraphrase_run(tmp_path_factory):
    """Same meaning (score 4 or more) or not, from the generated similarity pairs; ~10 s."""
    folder = tmp_path_factory.mktemp("paws")
    rows = [{"sentence1": r["sentence1"], "sentence2": r["sentence2"], "label": LABELS[r["score"] >= 4]}
            for r in generate_sts_pairs(3400, seed=8)]
    write(folder / "train.jsonl", rows[:3000])
    write(folder / "validation.jsonl", rows[3000:])
    return api.train(None, [
        "corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
        f"corpus.validation_file={folder / 'validation.jsonl'}", f"corpus.labels={list(LABELS)}",
        f"trainer.output_dir={folder / 'run'}", f"data.cache_dir={folder / 'cache'}", *MODEL,
        "trainer.monitor=val_f1", "trainer.max_epochs=3", "optim.lr=1e-3", "trainer.precision=32"])


def f1_of_second_label(gold: list[str], predicted: list[str]) -> float:
    positive = LABELS[1]
    tp = sum(g == p == positive for g, p in zip(gold, predicted))
    fp = sum(p == positive != g for g, p in zip(gold, predicted))
    fn = sum(g == positive != p for g, p in zip(gold, predicted))
    return 2 * tp / (2 * tp + fp + fn)


def test_a_two_label_run_reports_the_f1_of_its_second_label(paraphrase_run):
    rows = [json.loads(line) for line in
            (paraphrase_run.output_dir.parent / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = [Pair(r["sentence1"], r["sentence2"], r["label"]) for r in rows]
    predicted = [p.label for p in Predictor.from_pretrained(paraphrase_run.model_dir).predict(pairs)]
    gold = [p.label for p in pairs]
    m = paraphrase_run.metrics
    assert m["val_f1"] == pytest.approx(f1_of_second_label(gold, predicted), abs=1e-6)
    assert m["val_accuracy"] == pytest.approx(sum(g == p for g, p in zip(gold, predicted)) / len(gold), abs=1e-6)
    # a model that learnt something, so that the F1 above is not the trivial 0 of "never the second label"
    assert 0.5 < m["val_f1"] < 1 and len(set(predicted)) == 2
    # the F1 of the first label differs: val_f1 is not a symmetric score
    flipped = f1_of_second_label([LABELS[g == LABELS[0]] for g in gold], [LABELS[p == LABELS[0]] for p in predicted])
    assert abs(flipped - m["val_f1"]) > 1e-3


def test_the_best_checkpoint_is_the_best_f1(paraphrase_run):
    with open(paraphrase_run.output_dir / "logs" / "metrics.csv", newline="") as fh:
        logged = [float(r["val_f1"]) for r in csv.DictReader(fh) if r.get("val_f1")]
    assert len(logged) == 3
    assert paraphrase_run.metrics["val_f1"] == pytest.approx(max(logged), abs=1e-6)
