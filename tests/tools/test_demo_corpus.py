"""The embedded demo corpus and its generator (tools.demo_corpus): reproducible, balanced, its test split made
of held-out template cells only, and no premise in two splits."""

from __future__ import annotations

import gzip
import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tools.demo_corpus import HELD_OUT, LABELS, _stream, generate_demo_pairs, write_demo_corpus
from tools.make_demo_corpus import N_TEST, N_TRAIN, N_VALIDATION, SEED
from tools.scene import held_out

DEMO_DIR = Path(__file__).resolve().parents[2] / "src" / "korpair" / "resources" / "demo_nli"
SPLITS = ("train", "validation", "test")
HANGUL = re.compile("[\uac00-\ud7a3]")


def shipped_file(name: str) -> Path:
    return DEMO_DIR / ("train.jsonl.gz" if name == "train" else f"{name}.jsonl")


def shipped_bytes(name: str) -> bytes:
    path = shipped_file(name)
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict]]:
    return {name: [json.loads(line) for line in shipped_bytes(name).decode("utf-8").splitlines()]
            for name in SPLITS}


@pytest.fixture(scope="module")
def cells() -> dict[tuple[str, str], tuple]:
    """(premise, hypothesis) -> (family, frame, relation, slot) for the stream the shipped files came from."""
    found: dict[tuple[str, str], tuple] = {}
    for _, cell, pair in itertools.islice(_stream(SEED), 120_000):
        found[(pair["premise"], pair["hypothesis"])] = cell
    return found


def test_the_generator_is_deterministic_and_balanced():
    a = list(generate_demo_pairs(301, seed=3))
    assert a == list(generate_demo_pairs(301, seed=3))
    assert a != list(generate_demo_pairs(301, seed=4))
    counts = Counter(p["label"] for p in a)
    assert max(counts.values()) - min(counts[lab] for lab in LABELS) <= 1


def test_the_shipped_files_are_what_the_generator_writes(tmp_path, shipped):
    write_demo_corpus(tmp_path, n_train=N_TRAIN, n_validation=N_VALIDATION, n_test=N_TEST, seed=SEED)
    for name in SPLITS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == shipped_bytes(name), name
    assert not (DEMO_DIR / "train.jsonl").exists()  # shipped compressed: the package stays small
    assert shipped_file("train").stat().st_size < 1_000_000


def test_splits_are_balanced_unique_and_korean(shipped):
    sizes = {"train": N_TRAIN, "validation": N_VALIDATION, "test": N_TEST}
    for name, rows in shipped.items():
        assert len(rows) == sizes[name]
        assert Counter(r["label"] for r in rows) == {lab: sizes[name] // 3 for lab in LABELS}, name
        assert len({(r["premise"], r["hypothesis"]) for r in rows}) == len(rows), name
        assert all(HANGUL.search(r["premise"]) and HANGUL.search(r["hypothesis"]) for r in rows)
        assert all(r["premise"] != r["hypothesis"] for r in rows)


def test_the_test_split_is_held_out_cells_and_new_premises(shipped, cells):
    """Test pairs come only from held-out (template, filler) cells, which training never shows; no premise is
    in two splits, so the test accuracy measures generalisation, not memorisation."""
    for name, rows in shipped.items():
        for r in rows:
            cell = cells[(r["premise"], r["hypothesis"])]
            assert held_out(HELD_OUT, *cell) == (name == "test"), (name, r, cell)
    premises = {name: {r["premise"].rstrip(".") for r in rows} for name, rows in shipped.items()}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not premises[a] & premises[b], (a, b)


def test_every_held_out_filler_word_also_occurs_in_training(shipped):
    """A from-scratch model cannot know a word it never saw: the held-out cells combine known parts."""
    train_text = "\n".join(r["premise"] + " " + r["hypothesis"] for r in shipped["train"])
    for family, frame, _, slot in HELD_OUT:
        if slot and HANGUL.search(slot):
            stem = slot.rstrip("을를에가").split()[0]
            assert stem in train_text, (family, frame, slot)


def test_every_held_out_filler_is_taught_with_all_three_labels(shipped):
    """A filler that training shows only in one label's hypotheses (a distractor) teaches the model that label
    for it; the held-out cells must combine parts that training uses in earnest."""
    for family, frame, _, slot in HELD_OUT:
        if slot and HANGUL.search(slot):
            stem = slot.rstrip("을를에가한했").split()[0]  # 도착한, 도착했 -> 도착
            labels = {r["label"] for r in shipped["train"] if stem in r["hypothesis"]}
            assert labels == set(LABELS), (family, frame, slot, labels)


def test_the_phenomena_of_the_issue_are_all_there(shipped, cells):
    families = Counter(cells[(r["premise"], r["hypothesis"])][0] for rows in shipped.values() for r in rows)
    assert set(families) == {"activity", "weather", "events", "count", "dates", "quantifiers", "roles", "states"}
    hypotheses = [r["hypothesis"] for r in shipped["train"]]
    assert sum("않" in h for h in hypotheses) > 1000            # negation
    assert sum(bool(re.search(r"\d", h)) for h in hypotheses) > 1000   # numbers and dates
