"""Real pairs of a model's own task, read from the corpus its folder records: what exports time and calibrate on.

Example::

    pairs = own_pairs("runs/demo/model", 256, ask="pass data=")   # spread over its validation split
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from korpair.corpora import read_split
from korpair.errors import CorpusError, KorpairError
from korpair.model_folder import SECTION, corpus_config, model_task, read_section
from korpair.types import Pair, ScoreRange

log = logging.getLogger(__name__)


def own_pairs(model_dir: str | Path, limit: int, *, ask: str) -> list[Pair]:
    """Up to ``limit`` pairs spread evenly over the recorded corpus's validation split (else its test, else its
    train split); a split may be sorted by label or source, so the first ones would not do.

    ``ask`` ends each error: what the caller can pass instead (``"pass data= ..."``).
    """
    where = Path(model_dir) / "config.json"
    cfg = corpus_config(read_section(model_dir), str(where))
    if cfg is None:
        raise CorpusError(f"{model_dir}: the model folder records no training corpus (no {SECTION}.corpus in "
                          f"{where}) to take real pairs from; {ask}")
    target = ScoreRange() if model_task(model_dir) == "regression" else None
    problems = []
    for split in ("validation", "test", "train"):
        try:
            pairs = read_split(cfg, split, target, Counter())
        except KorpairError as err:
            problems.append(f"{split}: {err}")
            continue
        if pairs:
            log.info("using pairs of the %s split of %s", split, cfg.name)
            return spread(pairs, limit)
        problems.append(f"{split}: no pairs")
    raise CorpusError(f"{model_dir}: no split of the corpus it records ({cfg.name}) gives pairs "
                      f"({'; '.join(problems)}); {ask}")


def spread(items: list, limit: int) -> list:
    """At most ``limit`` of ``items``, evenly spaced from the first to the last (a file may be sorted by label).

    >>> spread(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
