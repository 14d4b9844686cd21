"""A collapsed run says so after its validations, with what usually helps; the bar shows no v_num."""

from __future__ import annotations

import json
import logging
import random

import pytest
from conftest import write_pair_task_files

from korpair import api
from korpair.training.collapse import collapse_message, flat_message
from korpair.training.trainer import ProgressBar

TINY = ["model.from_scratch=true", "model.vocab_size=1000", "model.hidden_size=32", "model.num_layers=1",
        "model.num_heads=2", "model.intermediate_size=64", "trainer.progress_bar=false"]


def test_the_decision():
    assert "'b' for 95% of the 100" in collapse_message([3, 95, 2], ("a", "b", "c"))
    assert collapse_message([90, 5, 5], ("a", "b", "c")) is None, "90% is not yet more than 90%"
    assert flat_message(0.5, 1.0, 50) is None and flat_message(0.05, 1.0, 50) is not None
    assert flat_message(0.0, 0.0, 50) is None, "constant gold scores: nothing to compare with"


@pytest.mark.slow
def test_a_label_shuffled_corpus_gets_the_collapse_warning(tmp_path, caplog):
    overrides = write_pair_task_files(tmp_path, 600, 480, seed=2)
    # labels shuffled: nothing in the pair predicts them, and a too-high learning rate settles on one class
    rng = random.Random(0)
    for name in ("train", "validation"):
        path = tmp_path / f"{name}.jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        labels = [r["label"] for r in rows]
        rng.shuffle(labels)
        path.write_text("".join(json.dumps({**r, "label": lab}, ensure_ascii=False) + "\n"
                                for r, lab in zip(rows, labels)), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="korpair"):
        api.train(None, [*overrides, *TINY, "optim.lr=0.05", "trainer.max_epochs=2",
                         f"trainer.output_dir={tmp_path / 'run'}"])
    [first, *_] = [r.getMessage() for r in caplog.records if "does not tell the pairs apart" in r.getMessage()]
    assert "of the 120 validation pairs" in first and "pretrained model" in first and "optim.lr is 0.05" in first


def test_the_progress_bar_shows_no_logger_version():
    class Trainer:
        progress_bar_metrics = {"train_loss": 0.5}
        loggers = []

    metrics = ProgressBar().get_metrics(Trainer(), None)
    assert "v_num" not in metrics and metrics["train_loss"] == 0.5
