"""What the generators of the shipped corpora share: label quotas per split, and the JSON Lines they write."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

SPLIT_NAMES = ("train", "validation", "test")


def label_quotas(sizes: Sequence[int], labels: Sequence[str]) -> list[dict[str, int]]:
    """Pairs to take of each label in each split: equal, the first labels one more where a size does not divide."""
    if min(sizes) < 0:
        raise ValueError("split sizes must be >= 0")
    quotas = []
    for size in sizes:
        q = {lab: size // len(labels) for lab in labels}
        for lab in labels[: size % len(labels)]:
            q[lab] += 1
        quotas.append(q)
    return quotas


def write_splits(out_dir: Path, splits: Sequence[list[dict]], seed: int) -> None:
    """``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``, each shuffled by ``seed``: UTF-8, Hangul as is."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(SPLIT_NAMES, splits):
        random.Random(f"{seed}-{name}").shuffle(rows)
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
