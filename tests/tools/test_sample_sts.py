"""The generated similarity task (tools.sample_sts): deterministic, a function of the pair, not surface overlap."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from conftest import SHARED_DATA
from scipy.stats import spearmanr

from tools.sample_sts import PEOPLE, generate_sts_pairs, write_sts_files


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate_sts_pairs(4000, seed=0)


def char_overlap(a: str, b: str) -> float:
    a, b = set(a.replace(" ", "")), set(b.replace(" ", ""))
    return len(a & b) / len(a | b)


def test_same_seed_same_rows_other_seed_other_rows(rows):
    assert generate_sts_pairs(4000, seed=0) == rows
    assert generate_sts_pairs(50, seed=1) != rows[:50]
    assert set(rows[0]) == {"sentence1", "sentence2", "score"}


def test_scores_span_the_scale_as_real_numbers(rows):
    scores = [r["score"] for r in rows]
    assert min(scores) == 0.0 and max(scores) == 5.0
    assert all(0.0 <= s <= 5.0 for s in scores)
    assert len(set(scores)) >= 8 and any(not float(s).is_integer() for s in scores)
    for level in (0, 1, 2, 3, 4):  # every band of the scale is well populated
        assert sum(level <= s < level + 1 for s in scores) > 100, level


def test_the_score_is_a_function_of_the_pair(rows):
    seen = defaultdict(set)
    for r in generate_sts_pairs(30000, seed=2):
        seen[frozenset((r["sentence1"], r["sentence2"]))].add(r["score"])
    repeated = [scores for scores in seen.values() if len(scores) > 1]
    assert not repeated, repeated[:3]


def test_surface_overlap_is_not_the_score(rows):
    overlap = [char_overlap(r["sentence1"], r["sentence2"]) for r in rows]
    rho = spearmanr(overlap, [r["score"] for r in rows])[0]
    assert 0.4 < rho < 0.8, rho
    # paraphrases that share little, and pairs that share much but mean something else
    assert any(r["score"] == 5.0 and o < 0.5 for r, o in zip(rows, overlap))
    assert any(r["score"] <= 2.0 and o > 0.8 for r, o in zip(rows, overlap))


def test_sentences_are_korean_with_particles_that_fit(rows):
    texts = {t for r in rows for t in (r["sentence1"], r["sentence2"])}
    assert all(t.endswith(".") and re.search("[가-힣]", t) for t in texts)
    assert any(t.endswith("습니다.") for t in texts) and any(t.endswith("어요.") for t in texts)
    names = {form for person in PEOPLE for form in person}
    for text in texts:
        for name in names:
            for particle, after_vowel, after_consonant in (("topic", "는", "은"), ("subject", "가", "이")):
                final = (ord(name[-1]) - 0xAC00) % 28
                wrong = after_vowel if final else after_consonant
                assert f" {name}{wrong} " not in f" {text}", (text, particle)


def test_write_sts_files(tmp_path):
    paths = write_sts_files(tmp_path / "sts", 30, 20, seed=3)
    assert [len(p.read_text(encoding="utf-8").splitlines()) for p in paths.values()] == [20, 10]


@pytest.mark.skipif(not (SHARED_DATA / "korsts" / "sts-train.tsv").is_file(), reason="KorSTS is not in ../shared")
def test_no_sentence_comes_from_korsts(rows):
    korsts = set()
    for name in ("sts-train.tsv", "sts-dev.tsv", "sts-test.tsv"):
        for line in (SHARED_DATA / "korsts" / name).read_text(encoding="utf-8").splitlines()[1:]:
            korsts.update(line.split("\t")[5:7])
    ours = {t for r in rows for t in (r["sentence1"], r["sentence2"])}
    assert not ours & korsts
