"""Deterministic generator for korpair's embedded demo NLI corpus (``korpair/resources/demo_nli``).

Every sentence is built from templates and slot fillers written for korpair
(tools/scenes_*.py); none is copied or paraphrased from KLUE-NLI, KorNLI,
KorSTS or any other data set. The shipped corpus is licensed with the
project under the Apache License, Version 2.0.

A *scene* (a premise situation) offers many hypotheses, each with a relation
name and a label. The test split measures generalisation: its pairs come only
from held-out cells (:data:`HELD_OUT`: a premise template with a relation,
sometimes only for one slot filler) that never occur in the training or
validation split, and its premises are new sentences (a scene's split is
chosen from a hash of its premise, so no premise is in two splits).

Public API: :func:`generate_demo_pairs`, :func:`write_demo_corpus` and
:data:`LABELS`. ``python -m tools.make_demo_corpus`` writes the shipped files.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from tools.corpus_files import label_quotas, write_splits
from tools.korean import REGISTERS
from tools.scene import LABELS, Rule, Scene, held_out
from tools.scenes_daily import activity, events, weather
from tools.scenes_facts import count, dates
from tools.scenes_relations import quantifiers, roles, states

__all__ = ["HELD_OUT", "LABELS", "generate_demo_pairs", "write_demo_corpus"]

_FAMILIES: tuple[tuple[Callable[[random.Random], Scene], float], ...] = (
    (activity, 2.0), (weather, 1.5), (events, 1.2), (count, 1.5),
    (dates, 1.2), (quantifiers, 0.8), (roles, 2.0), (states, 1.2),
)
_REGISTER_WEIGHTS = (0.8, 0.05, 0.15)
# People type pairs without final periods, too.
_NO_PERIOD = 0.15

# Premise templates combined with one filler: (family, frame, None, slot). Scenes of these combinations, with
# every hypothesis they offer, make up the test split and only it; training sees each template with other
# fillers and each filler in the same part of other templates, with all three labels. A filler that training
# shows only as a distractor (키가, when comparisons of height were held out, came only in neutral
# hypotheses) tests what the model was taught against, not generalisation: the model said neutral to all.
HELD_OUT: tuple[Rule, ...] = (
    ("activity", "with", None, "요가를"),
    ("activity", "day_place", None, "김밥을"),
    ("activity", "neg", None, "기타를"),
    ("activity", "generic", None, "축구를"),
    ("activity", "place", None, "영화를"),
    ("weather", "city_now", None, "snow"),
    ("weather", "time_past", None, "rain"),
    ("weather", "bare", None, "cloudy"),
    ("weather", "neg", None, "hot"),
    ("events", "cause_cancel", None, "음악회"),
    ("events", "despite_held", None, "마라톤 대회"),
    ("events", "cancel_because", None, "소풍"),
    ("events", "held", None, "야구 경기"),
    ("count", "num_obj", None, "튤립"),
    ("count", "obj_num", None, "연필"),
    ("count", "generic", None, "복숭아"),
    ("count", "none", None, "콜라"),
    ("count", "came", None, "송년회"),
    ("count", "attended", None, "세미나"),
    ("dates", "date_time", None, "도착한"),
    ("dates", "date", None, "이사한"),
    ("dates", "schedule", None, "면접"),
    ("dates", "schedule_in", None, "수업"),
    ("quantifiers", "all", None, "숙제를"),
    ("quantifiers", "none", None, "우산을"),
    ("quantifiers", "some", None, "시험에"),
    ("roles", "compare", None, "민수"),
    ("roles", "order", None, "도착했"),
    ("roles", "match", None, "부산팀"),
    ("states", "strong", None, "가방"),
    ("states", "past", None, "커피"),
    ("states", "now", None, "가게 문"),
)


def _stream(seed: int) -> Iterator[tuple[str, tuple[str, str, str, str], dict[str, str]]]:
    """Endless (scene key, (family, frame, relation, slot), pair) of unique pairs.

    Each scene gives three pairs in a row, one per label in shuffled order:
    the same premise with an entailed, a contradicted and a neutral
    hypothesis, as in SNLI. The premise alone then says nothing about the
    label, and every prefix of the stream is label-balanced to within one.
    The scene key is the premise in the plain register without its period:
    the same for a scene in every register, used to keep splits disjoint.
    """
    rng = random.Random(seed)
    funcs = [f for f, _ in _FAMILIES]
    weights = [w for _, w in _FAMILIES]
    seen: set[tuple[str, str]] = set()
    misses = 0
    while True:
        scene = rng.choices(funcs, weights=weights)[0](rng)
        reg = rng.choices(REGISTERS, weights=_REGISTER_WEIGHTS)[0]
        bare = rng.random() < _NO_PERIOD
        premise, cands = scene.render(reg)
        if bare:
            premise = premise.rstrip(".")
        chosen = []
        for label in rng.sample(LABELS, 3):
            found = [(rel, h.rstrip(".") if bare else h) for rel, lab, h in cands if lab == label]
            found = [(rel, h) for rel, h in found if h != premise and (premise, h) not in seen]
            if not found:
                break
            chosen.append((label, *found[rng.randrange(len(found))]))
        if len(chosen) < 3:
            misses += 1
            if misses > 100_000:  # pragma: no cover - the templates give far more pairs than anyone asks for
                raise RuntimeError("could not generate new unique pairs")
            continue
        key = scene.render("plain")[0].rstrip(".")
        for label, relation, hyp in chosen:
            seen.add((premise, hyp))
            yield key, (scene.family, scene.frame, relation, scene.slot), \
                {"premise": premise, "hypothesis": hyp, "label": label}


def generate_demo_pairs(n: int, seed: int = 0) -> Iterator[dict]:
    """Yield ``n`` unique, label-balanced Korean NLI pairs built from templates (held-out cells included).

    Each item is ``{"premise": str, "hypothesis": str, "label": str}`` with the
    label one of ``"entailment"``, ``"contradiction"``, ``"neutral"``. Label
    counts differ by at most one, every prefix is balanced the same way, and
    the same ``seed`` always gives the same pairs.

    Example:
        >>> pairs = list(generate_demo_pairs(3, seed=1))
        >>> sorted(p["label"] for p in pairs)
        ['contradiction', 'entailment', 'neutral']
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    stream = _stream(seed)
    for _ in range(n):
        yield next(stream)[2]


def _split_of(key: str, weights: tuple[int, int, int]) -> int:
    """Training or validation, from a hash of the scene key (test scenes are the held-out ones)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int(int.from_bytes(digest[:8], "big") % sum(weights) >= weights[0])


def write_demo_corpus(out_dir: Path, n_train: int = 900, n_validation: int = 150,
                        n_test: int = 150, seed: int = 0) -> None:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` to ``out_dir``.

    Each split is label-balanced (sizes that are not multiples of three are
    balanced to within one) and free of duplicate pairs. The splits are
    premise-disjoint: a scene's split comes from a hash of its plain-register
    premise. Training and validation pairs come from the cells that are not
    held out, test pairs only from the held-out ones (:data:`HELD_OUT`). Files
    are UTF-8 JSON Lines written with ``ensure_ascii=False``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_demo_corpus(Path(d), n_train=30, n_validation=6, n_test=6)
        ...     sorted(p.name for p in Path(d).iterdir())
        ['test.jsonl', 'train.jsonl', 'validation.jsonl']
    """
    sizes = (n_train, n_validation, n_test)
    quotas = label_quotas(sizes, LABELS)
    weights = (max(n_train, 1), max(n_validation, 1), 0)
    splits: list[list[dict]] = [[], [], []]
    remaining = sum(sizes)
    stream = _stream(seed)
    split_of_key: dict[str, int] = {}
    budget = 400 * (remaining + 10)
    while remaining > 0:
        budget -= 1
        if budget < 0:  # pragma: no cover
            raise RuntimeError("could not fill the requested splits")
        key, cell, pair = next(stream)
        idx = 2 if held_out(HELD_OUT, *cell) else _split_of(key, weights)
        # A hypernym premise (운동을 했다) renders the same for every filler, held out or not: it stays in the
        # split that first took it.
        if quotas[idx][pair["label"]] == 0 or split_of_key.setdefault(key, idx) != idx:
            continue
        quotas[idx][pair["label"]] -= 1
        splits[idx].append(pair)
        remaining -= 1
    write_splits(out_dir, splits, seed)
