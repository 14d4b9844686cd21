"""A corpus config -> train / validation / (test) pairs and the label set.

Example::

    splits = load_splits(CorpusConfig(name="sample"))
    splits.labels.names          # ('entailment', 'neutral', 'contradiction')
    splits.train[0].premise
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from korpair.config import CorpusConfig
from korpair.corpora.builtin import BUILTIN_CORPORA, fetch_corpus, sample_corpus_dir, sha256_file
from korpair.corpora.readers import iter_pairs, read_pairs
from korpair.errors import CorpusError
from korpair.types import NLI_LABELS, LabelMap, Pair

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairStream:
    """A split read from its files again on every iteration, never held in memory.

    Made by ``stream_split`` after a first pass that checked every row (all bad
    rows reported at once), counted the pairs and dropped rows and collected
    the labels. ``key`` fixes the content without reading it: the files'
    sha256 and the reading options.

    Example::

        train = stream_split(CorpusConfig(name="kornli"), "train")
        len(train), next(iter(train)).label  # (942854, 'entailment')
    """

    files: tuple[Path, ...]
    options: dict
    limit: int | None
    count: int
    labels: frozenset[str]
    key: str

    def __iter__(self) -> Iterator[Pair]:
        return _iter_files(self.files, self.options, self.limit, strict=False)

    def __len__(self) -> int:
        return self.count


@dataclass
class Splits:
    """The corpus split into train / validation / (optional) test, with its labels."""

    train: list[Pair] | PairStream
    validation: list[Pair]
    test: list[Pair] | None
    labels: LabelMap
    files: dict[str, list[Path]] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)


def resolve_files(cfg: CorpusConfig, splits: Sequence[str] | None = None
                  ) -> tuple[dict[str, list[Path]], tuple[str | None, ...], tuple[str, ...] | None]:
    """The local files of each split, the column names and the corpus's default labels.

    Built-in corpora are downloaded when missing (unless ``download`` is off);
    explicit ``*_file`` settings override a built-in corpus's files.
    """
    explicit = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
    columns: tuple[str | None, ...] = (cfg.text_a_column, cfg.text_b_column, cfg.label_column)
    if cfg.name == "sample":
        root = sample_corpus_dir()
        files = {s: [root / f"{s}.jsonl"] for s in ("train", "validation", "test")}
        default_labels: tuple[str, ...] | None = NLI_LABELS
    elif cfg.name in BUILTIN_CORPORA:
        corpus = BUILTIN_CORPORA[cfg.name]
        need = [s for s in corpus.splits if explicit.get(s) is None and (splits is None or s in splits)]
        files = fetch_corpus(cfg.name, cfg.data_dir, need, download=cfg.download) if need else {}
        columns = tuple(c or d for c, d in zip(columns, corpus.columns))
        default_labels = corpus.labels
    else:
        if cfg.train_file is None or cfg.validation_file is None:
            raise CorpusError("corpus.name=files needs corpus.train_file and corpus.validation_file")
        files, default_labels = {}, None
    files.update({s: [Path(p)] for s, p in explicit.items() if p is not None})
    if splits is not None:
        unknown = [s for s in splits if s not in files]
        if unknown:
            raise CorpusError(f"corpus {cfg.name!r} has no {unknown[0]!r} split; it has {sorted(files)}")
        files = {s: files[s] for s in splits}
    return files, columns, cfg.labels or default_labels


def read_split(cfg: CorpusConfig, split: str, labels: Sequence[str] | None = None,
               dropped: Counter | None = None, limit: int | None = None,
               resolved: tuple | None = None) -> list[Pair]:
    """Read one split (``train``, ``validation`` or ``test``) of the corpus a config names."""
    files, columns, default_labels = resolved or resolve_files(cfg, [split])
    labels = labels if labels is not None else default_labels
    pairs: list[Pair] = []
    for path in files[split]:
        pairs += read_pairs(
            path, fmt=cfg.format, text_a_column=columns[0], text_b_column=columns[1],
            label_column=columns[2], labels=labels, drop_labels=cfg.drop_labels,
            encoding=cfg.encoding, dropped=dropped, limit=None if limit is None else limit - len(pairs),
        )
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


def stream_split(cfg: CorpusConfig, split: str, labels: Sequence[str] | None = None,
                 dropped: Counter | None = None, limit: int | None = None,
                 resolved: tuple | None = None) -> PairStream:
    """Check one split in a first pass, then hand it out as a ``PairStream`` (see ``read_split``).

    Memory stays flat whatever the file size; the price is reading the files
    once more for every pass over the stream.
    """
    files, columns, default_labels = resolved or resolve_files(cfg, [split])
    labels = labels if labels is not None else default_labels
    options = dict(fmt=cfg.format, text_a_column=columns[0], text_b_column=columns[1], label_column=columns[2],
                   labels=None if labels is None else tuple(labels), drop_labels=tuple(cfg.drop_labels),
                   encoding=cfg.encoding)
    paths = tuple(Path(p) for p in files[split])
    count, seen = 0, set()
    for pair in _iter_files(paths, options, limit, strict=True, eager=True, dropped=dropped):
        count += 1
        seen.add(pair.label)
    key = hashlib.sha256(json.dumps({"files": [sha256_file(p) for p in paths], "limit": limit, **options},
                                    sort_keys=True).encode()).hexdigest()
    return PairStream(paths, options, limit, count, frozenset(seen - {None}), key)


def _iter_files(paths: Sequence[Path], options: dict, limit: int | None, **kwargs) -> Iterator[Pair]:
    left = limit
    for path in paths:
        for pair in iter_pairs(path, **options, limit=left, **kwargs):
            yield pair
            left = None if left is None else left - 1
        if left is not None and left <= 0:
            return


def load_splits(cfg: CorpusConfig, *, stream_train: bool = False) -> Splits:
    """Read the train / validation / (test) pairs that a corpus config names.

    With ``stream_train`` the training split is a ``PairStream``: checked in a
    first pass, then read again on each use, so a file larger than memory works.
    """
    resolved = resolve_files(cfg)
    files, _, labels = resolved
    dropped: Counter = Counter()
    read_train = stream_split if stream_train else read_split
    train = read_train(cfg, "train", labels, dropped, cfg.max_train_pairs, resolved)
    validation = read_split(cfg, "validation", labels, dropped, None, resolved)
    test = read_split(cfg, "test", labels, dropped, None, resolved) if "test" in files else None
    if labels is None:
        train_labels = train.labels if isinstance(train, PairStream) else {p.label for p in train}
        labels = tuple(sorted(train_labels - {None}))
        unseen = {p.label for p in validation} - set(labels)
        if unseen:
            raise CorpusError(
                f"{files['validation'][0]}: labels {sorted(unseen)} never occur in the training data"
            )
    for reason, n in sorted(dropped.items()):
        log.warning("dropped %d row(s): %s", n, reason)
    return Splits(train, validation, test, LabelMap(tuple(labels)), files, dropped)
