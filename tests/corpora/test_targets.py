"""What a corpus trains: labels or scores, decided by the config, a built-in corpus or the data, and the
warnings a learner needs when a label set looks wrong."""

from __future__ import annotations

import json
import logging
import math
import re

import pytest
from conftest import KOREAN_TEXTS

from korpair.config import CorpusConfig, load_config
from korpair.corpora import load_splits, read_pairs
from korpair.errors import ConfigError, CorpusError
from korpair.types import LabelMap, ScoreRange


def rows(labels, key="label"):
    n = len(KOREAN_TEXTS)
    return [{"sentence1": KOREAN_TEXTS[i % n], "sentence2": KOREAN_TEXTS[(3 * i + 1) % n], key: label}
            for i, label in enumerate(labels)]


@pytest.fixture
def files(tmp_path):
    def write(train_labels, dev_labels, key="label", ext="jsonl"):
        paths = []
        for name, labels in (("train", train_labels), ("dev", dev_labels)):
            path = tmp_path / f"{name}.{ext}"
            if ext == "tsv":
                lines = ["sentence1\tsentence2\t" + key] + [f"{r['sentence1']}\t{r['sentence2']}\t{r[key]}"
                                                            for r in rows(labels, key)]
                path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            else:
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows(labels, key)),
                                encoding="utf-8")
            paths.append(path)
        return CorpusConfig(name="files", train_file=paths[0], validation_file=paths[1])

    return write


def test_scores_with_fractions_train_a_regression_model_and_say_so(files, caplog):
    cfg = files(["4.2", "0.5", "3.000", "1"] * 10, ["2.5", "5.0"], key="score", ext="tsv")
    with caplog.at_level(logging.INFO, logger="korpair"):
        splits = load_splits(cfg)
    assert splits.task == "regression" and isinstance(splits.target, ScoreRange)
    assert (splits.target.low, splits.target.high) == (0.5, 4.2), "the training scores' range when none is declared"
    assert {p.label for p in splits.train} == {4.2, 0.5, 3.0, 1.0}, "'3.000' and '3' are one score, not two classes"
    assert "regression" in caplog.text and re.search(r"corpus\.task[= ]classification", caplog.text)


def test_few_whole_numbers_are_classes(files):
    splits = load_splits(files(["0", "1"] * 20, ["1", "0"]))
    assert splits.task == "classification" and splits.target.names == ("0", "1")


def test_declared_task_wins_over_the_data(files):
    cfg = files(["0", "1", "2"] * 20, ["1"]).model_copy(update={"task": "regression"})
    assert load_splits(cfg).task == "regression"


@pytest.mark.parametrize("bad, why", [("high", "not a number"), ("nan", "not a finite number"),
                                      ("inf", "not a finite number"), ("5.5", "outside the range 0 to 5")])
def test_a_bad_score_is_named_with_its_line(files, bad, why):
    labels = ["1.5", "2.5"] * 10
    labels[6] = bad
    cfg = files(labels, ["2.5"], key="score").model_copy(update={"task": "regression", "score_range": (0, 5)})
    with pytest.raises(CorpusError, match=rf"train\.jsonl:7: .*{why}"):
        load_splits(cfg)


def test_a_validation_score_outside_the_declared_range_is_an_error(files):
    cfg = files(["1.5", "2.5"] * 10, ["6.0"], key="score").model_copy(update={"score_range": (0, 5)})
    with pytest.raises(CorpusError, match=r"dev\.jsonl:1: score 6 is outside the range 0 to 5"):
        load_splits(cfg)


def test_a_regression_config_with_a_classification_corpus_is_a_config_error():
    with pytest.raises(ConfigError, match="corpus.task='regression' does not fit corpus.name='klue-nli'"):
        load_config("sample", ["corpus.name=klue-nli", "corpus.task=regression"])
    with pytest.raises(ConfigError, match="trainer.monitor='val_accuracy' is not reported by regression"):
        load_config("sample", ["corpus.name=korsts", "trainer.monitor=val_accuracy"])
    assert load_config("sample", ["corpus.name=klue-sts"]).monitor_for("regression") == "val_spearman"


def test_a_dotted_label_column_reads_inside_an_object(tmp_path):
    path = tmp_path / "sts.json"
    path.write_text(json.dumps([{"sentence1": "비가 온다", "sentence2": "비가 내린다",
                                 "labels": {"label": 4.6, "binary-label": 1}}]), encoding="utf-8")
    [pair] = read_pairs(path, label_column="labels.label", scores=ScoreRange(0, 5))
    assert pair.label == 4.6 and not math.isnan(pair.label)
    with pytest.raises(CorpusError, match=r"record 1: label field 'labels' holds a JSON dict.*labels\.label"):
        read_pairs(path)


def test_a_rare_label_is_shown_with_its_rows(files, caplog):
    labels = ["entailment", "neutral", "contradiction"] * 100
    labels[41] = "maybe"
    with caplog.at_level(logging.WARNING, logger="korpair"):
        splits = load_splits(files(labels, ["neutral"]))
    assert "maybe" in splits.target.names, "own files without declared labels keep what the data has"
    [line] = [r.getMessage() for r in caplog.records if "maybe" in r.getMessage()]
    assert "1 of 300 training rows" in line and "train.jsonl:42" in line and "corpus.labels" in line.replace("--", "")


def test_a_declared_label_set_makes_a_typo_an_error_and_names_a_missing_label(files, caplog):
    labels = ["entailment", "contradiction"] * 30
    cfg = files(labels, ["entailment"]).model_copy(update={"labels": ("entailment", "neutral", "contradiction")})
    with caplog.at_level(logging.WARNING, logger="korpair"):
        splits = load_splits(cfg)
    assert splits.target == LabelMap(("entailment", "neutral", "contradiction"))
    assert "label 'neutral' never occurs in the 60 training rows" in caplog.text
    typo = files(labels[:-1] + ["maybe"], ["entailment"]).model_copy(update={"labels": ("entailment", "contradiction")})
    with pytest.raises(CorpusError, match=r"train\.jsonl:60: unknown label 'maybe'"):
        load_splits(typo)


def test_no_warning_for_a_balanced_label_set(files, caplog):
    with caplog.at_level(logging.WARNING, logger="korpair"):
        load_splits(files(["a", "b", "c"] * 30, ["a"]))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
