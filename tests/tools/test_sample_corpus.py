"""The embedded sample corpus and its generator (tools.sample_corpus)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tools.sample_corpus import LABELS, generate_nli_pairs, generate_pair_task, write_sample_corpus

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "src" / "korpair" / "resources" / "sample_nli"
SPLITS = ("train", "validation", "test")
SHIPPED_SIZES = {"train": 900, "validation": 150, "test": 150}
HANGUL = re.compile("[\uac00-\ud7a3]")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict]]:
    return {name: read_jsonl(SAMPLE_DIR / f"{name}.jsonl") for name in SPLITS}


def sentences(text: str) -> list[str]:
    return [s if s.endswith(".") else s + "." for s in text.split(". ")]


# --------------------------------------------------------------------------- generator


def test_generate_nli_pairs_is_deterministic():
    assert list(generate_nli_pairs(120, seed=7)) == list(generate_nli_pairs(120, seed=7))
    assert list(generate_nli_pairs(60, seed=7)) != list(generate_nli_pairs(60, seed=8))


def test_generate_nli_pairs_prefix_is_stable():
    # a longer run starts with the shorter one
    assert list(generate_nli_pairs(30, seed=2)) == list(generate_nli_pairs(90, seed=2))[:30]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 100, 301])
def test_generate_nli_pairs_count_and_balance(n):
    pairs = list(generate_nli_pairs(n, seed=1))
    assert len(pairs) == n
    counts = Counter(p["label"] for p in pairs)
    assert set(counts) <= set(LABELS)
    if n >= 3:
        assert max(counts.values()) - min(counts[lab] for lab in LABELS) <= 1


def test_generated_pairs_are_well_formed_and_unique():
    pairs = list(generate_nli_pairs(1500, seed=0))
    assert all(set(p) == {"premise", "hypothesis", "label"} for p in pairs)
    assert {p["label"] for p in pairs} == set(LABELS)
    keys = [(p["premise"], p["hypothesis"]) for p in pairs]
    assert len(set(keys)) == len(keys)
    for p in pairs:
        for text in (p["premise"], p["hypothesis"]):
            assert text.strip() == text and text.endswith(".")
            assert HANGUL.search(text)
            assert "  " not in text
        assert p["premise"] != p["hypothesis"]


def test_negative_argument_rejected():
    with pytest.raises(ValueError):
        list(generate_nli_pairs(-1))
    with pytest.raises(ValueError):
        generate_pair_task(-1)


def test_no_broken_morphology():
    # typical artefacts of string-hacked conjugation or particle choice
    bad = re.compile(r"(하었|았었다|었었다|않았았|않았었|는는 |은는 |을를 |를을 "
                     r"|\.\.|다다\.|않다었|[a-zA-Z])")
    for p in generate_nli_pairs(3000, seed=11):
        for text in (p["premise"], p["hypothesis"]):
            assert not bad.search(text), text


def test_one_register_per_pair():
    def register(sentence: str) -> str:
        if sentence.endswith("니다.") and not sentence.endswith(" 아니다."):
            return "formal"
        if sentence.endswith("요."):
            return "polite"
        return "plain"

    for p in generate_nli_pairs(1500, seed=4):
        regs = {register(s) for s in sentences(p["premise"]) + [p["hypothesis"]]}
        assert len(regs) == 1, p


def test_write_sample_corpus_small(tmp_path):
    write_sample_corpus(tmp_path, n_train=31, n_validation=7, n_test=6, seed=5)
    rows = {name: read_jsonl(tmp_path / f"{name}.jsonl") for name in SPLITS}
    assert [len(rows[n]) for n in SPLITS] == [31, 7, 6]
    for name in SPLITS:
        counts = Counter(r["label"] for r in rows[name])
        assert max(counts.values()) - min(counts[lab] for lab in LABELS) <= 1
    raw = (tmp_path / "train.jsonl").read_text(encoding="utf-8")
    assert "\\u" not in raw and HANGUL.search(raw)  # ensure_ascii=False


# --------------------------------------------------------------------------- shipped files


def test_shipped_files_are_reproducible(tmp_path):
    """The shipped files are exactly what scripts/make_sample_corpus.py writes."""
    write_sample_corpus(tmp_path, n_train=900, n_validation=150, n_test=150, seed=0)
    for name in SPLITS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (SAMPLE_DIR / f"{name}.jsonl").read_bytes(), name


def test_shipped_sizes_labels_and_balance(shipped):
    for name, rows in shipped.items():
        assert len(rows) == SHIPPED_SIZES[name]
        counts = Counter(r["label"] for r in rows)
        assert set(counts) == set(LABELS)
        assert len(set(counts.values())) == 1, (name, counts)


def test_shipped_rows_are_well_formed(shipped):
    for rows in shipped.values():
        for r in rows:
            assert set(r) == {"premise", "hypothesis", "label"}
            for key in ("premise", "hypothesis"):
                assert isinstance(r[key], str) and r[key].strip()
                assert HANGUL.search(r[key])


def test_shipped_no_duplicate_pairs(shipped):
    keys = [(r["premise"], r["hypothesis"]) for rows in shipped.values() for r in rows]
    assert len(keys) == len(set(keys))


def test_shipped_splits_are_premise_disjoint(shipped):
    premises = {name: {r["premise"] for r in rows} for name, rows in shipped.items()}
    first = {name: {sentences(r["premise"])[0] for r in rows} for name, rows in shipped.items()}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not premises[a] & premises[b], (a, b)
            assert not first[a] & first[b], (a, b)


def _contradiction_iff(rows: list[dict], cue) -> float:
    return sum(cue(r["hypothesis"]) == (r["label"] == "contradiction") for r in rows) / len(rows)


def test_no_single_trivial_cue(shipped):
    """Negation words alone do not give the label away."""
    val = shipped["validation"]
    assert _contradiction_iff(val, lambda h: "않" in h) < 0.75
    negations = ("않", "없", "아니", "못", "아무")
    assert _contradiction_iff(val, lambda h: any(w in h for w in negations)) < 0.75
    # negation appears under every label, in hypotheses and in premises
    for lab in LABELS:
        hyps = [r["hypothesis"] for rows in shipped.values() for r in rows if r["label"] == lab]
        prems = [r["premise"] for rows in shipped.values() for r in rows if r["label"] == lab]
        assert 0.15 < sum("않" in h for h in hyps) / len(hyps) < 0.5, lab
        assert sum("않" in p for p in prems) / len(prems) > 0.1, lab


def test_hypothesis_only_word_model_is_weak(shipped):
    """A naive-Bayes model on hypothesis words alone stays far from solving the task."""
    import math

    counts: dict[str, Counter] = {}
    prior = Counter(r["label"] for r in shipped["train"])
    for r in shipped["train"]:
        for w in set(r["hypothesis"].rstrip(".").split()):
            counts.setdefault(w, Counter())[r["label"]] += 1

    def predict(h: str) -> str:
        def score(lab: str) -> float:
            return sum(math.log((counts.get(w, Counter())[lab] + 1) / (prior[lab] + 2))
                       for w in set(h.rstrip(".").split()))
        return max(LABELS, key=score)

    val = shipped["validation"]
    acc = sum(predict(r["hypothesis"]) == r["label"] for r in val) / len(val)
    assert acc < 0.75, acc


# --------------------------------------------------------------------------- easy pair task


def test_pair_task_label_function():
    rows = generate_pair_task(300, seed=3)
    assert len(rows) == 300
    assert Counter(r["label"] for r in rows) == {lab: 100 for lab in LABELS}
    for r in rows:
        p, h, lab = r["premise"], r["hypothesis"], r["label"]
        assert HANGUL.search(p) and HANGUL.search(h)
        assert "않" not in p  # premises are affirmative
        subject = p.split("는 ")[0] if "는 " in p else p.split("은 ")[0]
        if lab == "entailment":
            assert h == p
        elif lab == "contradiction":
            assert h != p and "지 않" in h
            # same sentence up to the verb: everything before the object's verb is shared
            assert h.rsplit(" ", 2)[0] == p.rsplit(" ", 1)[0]
        else:
            assert h != p and "않" not in h
            assert subject not in h  # about somebody (or something) else
            assert not set(h.rstrip(".").split()[:1]) & set(p.rstrip(".").split()[:1])


def test_pair_task_is_deterministic():
    assert generate_pair_task(90, seed=1) == generate_pair_task(90, seed=1)
    assert generate_pair_task(90, seed=1) != generate_pair_task(90, seed=2)
