"""Training on the annotators' votes (corpus.soft_labels) and evaluating by how far they agreed."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from korpair import api
from korpair.corpora import read_pairs
from korpair.corpora.votes import agreement
from korpair.errors import ConfigError, CorpusError

TINY = ["model.from_scratch=true", "model.vocab_size=500", "model.hidden_size=32", "model.num_layers=1",
        "model.num_heads=2", "model.intermediate_size=64", "trainer.max_epochs=2", "trainer.seed=5",
        "trainer.progress_bar=false", "optim.lr=1e-3", "trainer.calibrate=false"]
VOTES = ["v1", "v2", "v3", "v4", "v5"]
KLUE_DEV = SHARED_DATA / "klue-nli" / "klue-nli-v1.1_dev.json"


def write_voted(folder: Path, split_share: float, seed: int = 0) -> list[str]:
    """A generated pair task whose rows carry five votes: all the gold label, but ``split_share`` of the rows
    where one or two annotators chose another label (the gold label keeps the majority)."""
    from tools.sample_corpus import generate_pair_task

    rng = random.Random(seed)
    names = ("entailment", "neutral", "contradiction")
    rows = generate_pair_task(400, seed=seed)
    for row in rows:
        votes = [row["label"]] * 5
        if rng.random() < split_share:
            other = rng.choice([n for n in names if n != row["label"]])
            minority = rng.choice((1, 2))  # a 4-1 or a 3-2 split: the gold label keeps the majority
            votes[5 - minority:] = [other] * minority
        row.update(zip(VOTES, votes))
    for name, part in (("train", rows[:320]), ("validation", rows[320:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                                              encoding="utf-8")
    return ["corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
            f"corpus.validation_file={folder / 'validation.jsonl'}", f"corpus.vote_columns=[{', '.join(VOTES)}]",
            f"data.cache_dir={folder / 'cache'}", *TINY]


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def test_unanimous_votes_train_exactly_as_hard_labels(tmp_path):
    data = write_voted(tmp_path, split_share=0.0)
    hard = api.train(None, [*data, f"trainer.output_dir={tmp_path / 'hard'}"])
    soft = api.train(None, [*data, f"trainer.output_dir={tmp_path / 'soft'}", "corpus.soft_labels=true"])
    assert soft.metrics["val_loss"] == hard.metrics["val_loss"]
    assert soft.metrics["val_accuracy"] == hard.metrics["val_accuracy"]
    a, b = weights(hard.model_dir), weights(soft.model_dir)
    assert all((a[k] == b[k]).all() for k in a), "the same weights, bit for bit"


def test_split_votes_are_the_target_and_evaluate_reports_agreement(tmp_path):
    data = write_voted(tmp_path, split_share=0.4)
    hard = api.train(None, [*data, f"trainer.output_dir={tmp_path / 'hard'}"])
    soft = api.train(None, [*data, f"trainer.output_dir={tmp_path / 'soft'}", "corpus.soft_labels=true"])
    a, b = weights(hard.model_dir), weights(soft.model_dir)
    assert any(not (a[k] == b[k]).all() for k in a), "split votes change what the model is trained towards"

    report = api.evaluate(soft.model_dir, output_dir=tmp_path / "eval", report=True)
    pairs = read_pairs(tmp_path / "validation.jsonl", vote_columns=VOTES)
    expected = Counter(agreement(p.votes) for p in pairs)
    by_level = report.metrics["agreement"]["levels"]
    assert {name: v["pairs"] for name, v in by_level.items()} == dict(expected)
    assert list(by_level)[0] == "unanimous" and report.metrics["agreement"]["pairs"] == len(pairs)
    rows = [json.loads(line) for line in report.predictions_file.read_text(encoding="utf-8").splitlines()]
    for name, v in by_level.items():
        hits = [r["predicted"] == r["gold"] for r in rows if r["agreement"] == name]
        assert v["accuracy"] == pytest.approx(sum(hits) / len(hits))
        assert 0 <= v["js_divergence"] <= 1
    assert "주석자 합의" in (report.output_dir / "report.html").read_text(encoding="utf-8")


def test_soft_labels_without_votes_stop_before_training(tmp_path, pair_task_files):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="corpus.soft_labels=true, but no training pair has annotators' votes"):
        api.train(None, [*TINY, "corpus.name=files", f"corpus.train_file={pair_task_files / 'train.jsonl'}",
                         f"corpus.validation_file={pair_task_files / 'validation.jsonl'}",
                         "corpus.soft_labels=true", f"trainer.output_dir={out}"])
    assert not out.exists() or not any(out.iterdir())


def test_votes_that_are_not_labels_or_missing_columns_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [{"premise": "비가 온다", "hypothesis": "날씨가 맑다", "label": "contradiction", "v1": "contradiction",
             "v2": "maybe"}, {"premise": "비가 온다", "hypothesis": "비가 내린다", "label": "entailment",
                              "v1": "entailment"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(CorpusError) as err:
        read_pairs(path, vote_columns=["v1", "v2"], labels=("entailment", "neutral", "contradiction"))
    assert "bad.jsonl:1: unknown vote(s) ['maybe']" in str(err.value)
    assert "bad.jsonl:2: missing vote column(s) ['v2']" in str(err.value)
    with pytest.raises(ConfigError, match="soft_labels and corpus.vote_columns apply to classification"):
        api.train(None, ["corpus.task=regression", "corpus.soft_labels=true", f"corpus.train_file={path}",
                         f"corpus.validation_file={path}"])


@pytest.mark.skipif(not KLUE_DEV.is_file(), reason="KLUE-NLI dev is not in ../shared/data")
def test_klue_votes_are_read_as_the_annotators_gave_them():
    pairs = read_pairs(KLUE_DEV)
    assert len(pairs) == 3000 and all(len(p.votes) == 5 for p in pairs)
    levels = Counter(agreement(p.votes) for p in pairs)
    assert levels == {"unanimous": 2290, "4-1": 527, "3-2": 152, "3-1-1": 31}
    assert all(Counter(p.votes).most_common(1)[0][0] == p.label for p in pairs), "gold is the majority vote"
