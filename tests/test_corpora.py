"""Readers and built-in corpora: good files load, every kind of bad file fails with file:line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from korpair.config import CorpusConfig
from korpair.corpora import fetch_corpus, load_splits, read_pairs, read_split
from korpair.errors import CorpusError, DownloadError
from korpair.types import NLI_LABELS, LabelMap

ROWS = [
    {"premise": "비가 온다", "hypothesis": "날씨가 맑다", "label": "contradiction"},
    {"premise": "민수는 밥을 먹었다", "hypothesis": "민수는 식사를 했다", "label": "entailment"},
    {"premise": "지영은 책을 읽는다", "hypothesis": "지영은 소설을 좋아한다", "label": "neutral"},
]


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def tsv(rows, header=("sentence1", "sentence2", "gold_label")) -> str:
    lines = ["\t".join(header)] + ["\t".join((r["premise"], r["hypothesis"], r["label"])) for r in rows]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "tsv", "csv"])
def test_every_format_reads_the_same_pairs(tmp_path, fmt):
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS)
    elif fmt == "json":
        text = json.dumps(ROWS, ensure_ascii=False)
    elif fmt == "tsv":
        text = tsv(ROWS)
    else:
        text = "premise,hypothesis,label\n" + "".join(f'"{r["premise"]}","{r["hypothesis"]}",{r["label"]}\n' for r in ROWS)
    pairs = read_pairs(write(tmp_path, f"d.{fmt}", text))
    assert [(p.premise, p.hypothesis, p.label) for p in pairs] == [
        (r["premise"], r["hypothesis"], r["label"]) for r in ROWS
    ]


def test_custom_columns_and_bom_and_crlf(tmp_path):
    text = "\ufeffa,b,y\r\n" + "".join(f"{r['premise']},{r['hypothesis']},{r['label']}\r\n" for r in ROWS)
    pairs = read_pairs(write(tmp_path, "d.csv", text), text_a_column="a", text_b_column="b", label_column="y")
    assert pairs[0].premise == "비가 온다" and pairs[-1].label == "neutral"


def test_tsv_keeps_quote_characters(tmp_path):
    path = write(tmp_path, "d.tsv", 'sentence1\tsentence2\tgold_label\n그가 말했다, "엄마, 저 왔어요."\t그는 "안녕"이라 했다\tneutral\n')
    [pair] = read_pairs(path)
    assert pair.premise == '그가 말했다, "엄마, 저 왔어요."'
    assert pair.hypothesis == '그는 "안녕"이라 했다'


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match=r"nope\.jsonl: file not found"):
        read_pairs(tmp_path / "nope.jsonl")


def test_malformed_json_names_line(tmp_path):
    path = write(tmp_path, "d.json", '[\n  {"premise": "a", "hypothesis": "b", "label": "x"},\n  {"premise": \n')
    with pytest.raises(CorpusError, match=r"d\.json:\d+: invalid JSON"):
        read_pairs(path)


def test_malformed_jsonl_names_line(tmp_path):
    good = json.dumps(ROWS[0], ensure_ascii=False)
    path = write(tmp_path, "d.jsonl", f"{good}\n{good}\n{{broken\n")
    with pytest.raises(CorpusError, match=r"d\.jsonl:3: invalid JSON"):
        read_pairs(path)


def test_tsv_wrong_field_count_names_line(tmp_path):
    path = write(tmp_path, "d.tsv", tsv(ROWS) + "하나\t둘\n")
    with pytest.raises(CorpusError, match=r"d\.tsv:5: expected 3 fields .* found 2"):
        read_pairs(path)


def test_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, "d.tsv", tsv(ROWS, header=("s1", "s2", "gold_label")))
    with pytest.raises(CorpusError, match=r"missing a first text column.*columns are \['s1', 's2', 'gold_label'\]"):
        read_pairs(path)


def test_empty_text_and_unknown_label_all_reported(tmp_path, write_jsonl):
    rows = ROWS + [
        {"premise": "  ", "hypothesis": "x", "label": "neutral"},
        {"premise": "a", "hypothesis": "b", "label": "maybe"},
    ]
    path = write_jsonl(rows)
    with pytest.raises(CorpusError) as err:
        read_pairs(path, labels=NLI_LABELS)
    message = str(err.value)
    assert "2 bad row(s)" in message
    assert "data.jsonl:4: empty first text" in message
    assert "data.jsonl:5: unknown label 'maybe'" in message


def test_wrong_type_field(tmp_path, write_jsonl):
    path = write_jsonl([{"premise": 3, "hypothesis": "b", "label": "neutral"}])
    with pytest.raises(CorpusError, match=r":1: first text must be a string"):
        read_pairs(path)


def test_wrong_encoding_is_named_with_a_hint(tmp_path):
    path = write(tmp_path, "d.tsv", tsv(ROWS), encoding="cp949")
    with pytest.raises(CorpusError, match=r"d\.tsv:2: not valid utf-8 text; it looks like CP949"):
        read_pairs(path)
    assert read_pairs(path, encoding="cp949")[0].premise == "비가 온다"


def test_dropped_rows_are_counted(tmp_path, write_jsonl):
    path = write_jsonl(ROWS + [{"premise": "a", "hypothesis": "b", "label": "-"}] * 2)
    dropped: Counter = Counter()
    pairs = read_pairs(path, dropped=dropped)
    assert len(pairs) == 3
    assert sum(dropped.values()) == 2


def test_empty_file(tmp_path):
    with pytest.raises(CorpusError, match="no rows"):
        read_pairs(write(tmp_path, "d.jsonl", "\n\n"))
    with pytest.raises(CorpusError, match="empty file"):
        read_pairs(write(tmp_path, "d.tsv", ""))


def test_label_map():
    labels = LabelMap(NLI_LABELS)
    assert labels.id("neutral") == 1 and labels.id2label[2] == "contradiction"
    with pytest.raises(CorpusError):
        LabelMap(("a", "a"))


def test_sample_corpus_loads():
    splits = load_splits(CorpusConfig(name="sample"))
    assert splits.labels.names == NLI_LABELS
    assert len(splits.train) >= 300 and len(splits.validation) >= 50 and splits.test
    assert {p.label for p in splits.train} == set(NLI_LABELS)


def test_files_corpus_labels_from_data(tmp_path, write_jsonl):
    train = write_jsonl(ROWS * 2, "train.jsonl")
    val = write_jsonl(ROWS, "val.jsonl")
    splits = load_splits(CorpusConfig(name="files", train_file=train, validation_file=val))
    assert splits.labels.names == ("contradiction", "entailment", "neutral")
    bad_val = write_jsonl([{**ROWS[0], "label": "other"}], "bad.jsonl")
    with pytest.raises(CorpusError, match="never occur in the training data"):
        load_splits(CorpusConfig(name="files", train_file=train, validation_file=bad_val))


def test_offline_download_error_says_what_to_fetch(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr("time.sleep", lambda s: None)
    with pytest.raises(DownloadError) as err:
        fetch_corpus("kornli", tmp_path, ["validation"])
    message = str(err.value)
    assert "xnli.dev.ko.tsv" in message and str(tmp_path) in message and "https://" in message
    assert not list(tmp_path.iterdir()), "no partial file may be left behind"
    with pytest.raises(DownloadError, match="download is off"):
        fetch_corpus("klue-nli", tmp_path, ["validation"], download=False)


def test_download_verifies_checksum(tmp_path, monkeypatch):
    import io
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=0: io.BytesIO(b"tampered"))
    monkeypatch.setattr("time.sleep", lambda s: None)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_corpus("kornli", tmp_path, ["validation"])
    assert not (tmp_path / "xnli.dev.ko.tsv").exists()


KLUE_DEV = SHARED_DATA / "klue-nli" / "klue-nli-v1.1_dev.json"
XNLI_DEV = SHARED_DATA / "kornli" / "xnli.dev.ko.tsv"


@pytest.mark.skipif(not KLUE_DEV.exists(), reason=f"{KLUE_DEV} absent (team data)")
def test_real_klue_nli_dev_loads_through_builtin_corpus(tmp_path):
    cfg = CorpusConfig(name="klue-nli", data_dir=KLUE_DEV.parent, download=False)
    pairs = read_split(cfg, "validation")
    assert len(pairs) == 3000
    assert Counter(p.label for p in pairs) == {label: 1000 for label in NLI_LABELS}


@pytest.mark.skipif(not XNLI_DEV.exists(), reason=f"{XNLI_DEV} absent (team data)")
def test_real_kornli_xnli_dev_loads_through_builtin_corpus():
    cfg = CorpusConfig(name="kornli", data_dir=XNLI_DEV.parent, download=False)
    pairs = read_split(cfg, "validation")
    assert len(pairs) == 2490
    assert set(p.label for p in pairs) == set(NLI_LABELS)
    assert any('"' in p.premise for p in pairs), "quote characters inside TSV fields must survive"
