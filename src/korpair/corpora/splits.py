"""A corpus config -> train / validation / (test) pairs and their target: a label set or a score range.

The task comes from the config (``corpus.task``), a built-in corpus's own, or
for your own files from the training labels: numbers with fractions, or more
than ``MAX_NUMERIC_CLASSES`` distinct whole numbers, are scores (regression);
anything else is a set of labels. The choice is logged with how to change it.

Example::

    splits = load_splits(CorpusConfig(name="sample"))
    splits.target.names          # ('entailment', 'neutral', 'contradiction')
    splits.train[0].premise
    load_splits(CorpusConfig(name="korsts")).target  # ScoreRange(low=0.0, high=5.0)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from korpair.config import CorpusConfig
from korpair.corpora.builtin import BUILTIN_CORPORA, EMBEDDED_CORPORA, embedded_corpus_dir, fetch_corpus, sha256_file
from korpair.corpora.readers import LABEL_NAMES, iter_pairs, iter_records, read_pairs
from korpair.errors import CorpusError
from korpair.types import NLI_LABELS, LabelMap, Pair, ScoreRange, Target

log = logging.getLogger(__name__)

# Whole-number labels with at most this many values are classes (0/1 paraphrase, 0/1/2 NLI ids), not scores.
MAX_NUMERIC_CLASSES = 10
# A training label in fewer rows than this share is shown with where it is: usually a typo ("maybe", "neutal").
RARE_LABEL_SHARE = 0.005


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
    label_counts: dict[str | float, int]
    key: str

    @property
    def labels(self) -> frozenset[str | float]:
        return frozenset(self.label_counts)

    def __iter__(self) -> Iterator[Pair]:
        return _iter_files(self.files, self.options, self.limit, strict=False)

    def __len__(self) -> int:
        return self.count


@dataclass
class Splits:
    """The corpus split into train / validation / (optional) test, with its target.

    ``target`` is the ``LabelMap`` of a classification corpus or the
    ``ScoreRange`` of a regression one (the declared range, else the training
    scores' lowest and highest).
    """

    train: list[Pair] | PairStream
    validation: list[Pair]
    test: list[Pair] | None
    target: Target
    files: dict[str, list[Path]] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)

    @property
    def task(self) -> str:
        return self.target.task


@dataclass(frozen=True)
class Resolved:
    """Where a corpus config's data is and what it declares about it."""

    files: dict[str, list[Path]]
    columns: tuple[str | None, ...]
    labels: tuple[str, ...] | None  # the declared label set (config or built-in corpus)
    task: str | None  # the declared task; None: the training labels decide
    scores: ScoreRange | None  # the declared score range of a regression corpus
    drop_empty: bool = False
    drop_texts: tuple[str, ...] = ()  # placeholder texts whose rows are dropped and counted

    def target(self, given: Target | Sequence[str] | None = None) -> Target | Sequence[str] | None:
        """What rows are checked against: ``given``, else what the corpus declares."""
        if given is not None:
            return given
        if self.task == "regression":
            return self.scores or ScoreRange()
        return self.labels


def resolve_files(cfg: CorpusConfig, splits: Sequence[str] | None = None) -> Resolved:
    """The local files of each split, the column names and what the corpus declares (labels, task, range).

    Built-in corpora are downloaded when missing (unless ``download`` is off);
    explicit ``*_file`` settings override a built-in corpus's files.
    """
    explicit = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
    columns: tuple[str | None, ...] = (cfg.text_a_column, cfg.text_b_column, cfg.label_column)
    scores = ScoreRange(*cfg.score_range) if cfg.score_range else None
    drop_empty, drop_texts = False, ()
    if cfg.name in EMBEDDED_CORPORA:
        root = embedded_corpus_dir(cfg.name)
        # a large split is shipped compressed (the demo's training pairs)
        files = {s: [next((p for p in (root / f"{s}.jsonl", root / f"{s}.jsonl.gz") if p.exists()),
                          root / f"{s}.jsonl")] for s in ("train", "validation", "test")}
        default_labels: tuple[str, ...] | None = NLI_LABELS
    elif cfg.name in BUILTIN_CORPORA:
        corpus = BUILTIN_CORPORA[cfg.name]
        need = [s for s in corpus.splits if explicit.get(s) is None and (splits is None or s in splits)]
        files = fetch_corpus(cfg.name, cfg.data_dir, need, download=cfg.download) if need else {}
        columns = tuple(c or d for c, d in zip(columns, corpus.columns))
        default_labels = corpus.labels or None
        scores = scores or (ScoreRange(*corpus.score_range) if corpus.score_range else None)
        drop_empty, drop_texts = corpus.drop_empty, corpus.drop_texts
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
    task = cfg.known_task or ("classification" if cfg.labels else None)
    return Resolved(files, columns, cfg.labels or default_labels, task, scores, drop_empty, drop_texts)


def _reading(cfg: CorpusConfig, resolved: Resolved, target: Target | Sequence[str] | None) -> dict:
    """The reader options of a split: columns, and the labels or score range rows are checked against."""
    target = resolved.target(target)
    scores = target if isinstance(target, ScoreRange) else None
    labels = None if scores is not None or target is None else tuple(
        target.names if isinstance(target, LabelMap) else target)
    columns = resolved.columns
    return dict(fmt=cfg.format, text_a_column=columns[0], text_b_column=columns[1], label_column=columns[2],
                labels=labels, drop_labels=tuple(cfg.drop_labels), encoding=cfg.encoding, scores=scores,
                drop_empty=resolved.drop_empty, drop_texts=resolved.drop_texts,
                vote_columns=tuple(cfg.vote_columns) if cfg.vote_columns else None)


def read_split(cfg: CorpusConfig, split: str, target: Target | Sequence[str] | None = None,
               dropped: Counter | None = None, limit: int | None = None,
               resolved: Resolved | None = None) -> list[Pair]:
    """Read one split (``train``, ``validation`` or ``test``) of the corpus a config names.

    ``target`` (a ``LabelMap``, label names, or a ``ScoreRange`` for scores) is
    what each row's label is checked against; default: what the corpus declares.
    """
    resolved = resolved or resolve_files(cfg, [split])
    options = _reading(cfg, resolved, target)
    pairs: list[Pair] = []
    for path in resolved.files[split]:
        pairs += read_pairs(path, **options, dropped=dropped, limit=None if limit is None else limit - len(pairs))
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


def stream_split(cfg: CorpusConfig, split: str, target: Target | Sequence[str] | None = None,
                 dropped: Counter | None = None, limit: int | None = None,
                 resolved: Resolved | None = None) -> PairStream:
    """Check one split in a first pass, then hand it out as a ``PairStream`` (see ``read_split``).

    Memory stays flat whatever the file size; the price is reading the files
    once more for every pass over the stream.
    """
    resolved = resolved or resolve_files(cfg, [split])
    options = _reading(cfg, resolved, target)
    paths = tuple(Path(p) for p in resolved.files[split])
    count, seen = 0, Counter()
    for pair in _iter_files(paths, options, limit, strict=True, eager=True, dropped=dropped):
        count += 1
        seen[pair.label] += 1
    scores = options["scores"]
    described = {**options, "scores": scores.describe() if scores else None}
    key = hashlib.sha256(json.dumps({"files": [sha256_file(p) for p in paths], "limit": limit, **described},
                                    sort_keys=True).encode()).hexdigest()
    seen.pop(None, None)
    return PairStream(paths, options, limit, count, dict(seen), key)


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
    files = resolved.files
    dropped: Counter = Counter()
    read_train = stream_split if stream_train else read_split
    train = read_train(cfg, "train", None, dropped, cfg.max_train_pairs, resolved)
    seen = _labels(train)
    task = resolved.task
    if task is None:
        task = _infer_task(_label_counts(train), files["train"][0])
        if task == "regression":  # read again, each label checked and kept as a number
            resolved = dataclasses.replace(resolved, task=task)
            dropped.clear()
            train = read_train(cfg, "train", None, dropped, cfg.max_train_pairs, resolved)
            seen = _labels(train)
    target: Target
    if task == "regression":
        target = resolved.scores or ScoreRange(min(seen), max(seen))
    else:
        target = LabelMap(tuple(resolved.labels or sorted(seen)))
        _check_label_counts(_label_counts(train), resolved, cfg, files["train"])
    validation = read_split(cfg, "validation", resolved.target(), dropped, None, resolved)
    test = read_split(cfg, "test", resolved.target(), dropped, None, resolved) if "test" in files else None
    if task == "classification" and resolved.labels is None:
        unseen = {p.label for p in validation} - set(target.names)
        if unseen:
            raise CorpusError(
                f"{files['validation'][0]}: labels {sorted(unseen)} never occur in the training data"
            )
    for reason, n in sorted(dropped.items()):
        log.warning("dropped %d row(s): %s", n, reason)
    return Splits(train, validation, test, target, files, dropped)


def _labels(pairs: list[Pair] | PairStream) -> set:
    return set(pairs.labels) if isinstance(pairs, PairStream) else {p.label for p in pairs} - {None}


def _label_counts(pairs: list[Pair] | PairStream) -> Counter:
    if isinstance(pairs, PairStream):
        return Counter(pairs.label_counts)
    return Counter(p.label for p in pairs if p.label is not None)


def _check_label_counts(counts: Counter, resolved: Resolved, cfg: CorpusConfig, train_files: Sequence[Path]) -> None:
    """Warn about a training label set that looks wrong: a label in very few rows (often a typo, which would
    become a class of its own), or a declared label that never occurs."""
    total = sum(counts.values())
    for label in resolved.labels or ():
        if counts[label] == 0:
            log.warning("label %r never occurs in the %d training rows (%s): the model cannot learn it", label,
                        total, ", ".join(map(str, train_files)))
    rare = sorted((n, label) for label, n in counts.items() if n < RARE_LABEL_SHARE * total)
    for n, label in rare:
        where = _rows_with_label(cfg, resolved, train_files, label)
        fix = ("a typo? declare the label set with corpus.labels=[...] so that any other label is an error"
               if resolved.labels is None else "is it meant to be a class of its own?")
        log.warning("label %r occurs in only %d of %d training rows (%.2f%%), at %s: %s", label, n, total,
                    100 * n / total, ", ".join(where) + (", ..." if n > len(where) else ""), fix)


def _rows_with_label(cfg: CorpusConfig, resolved: Resolved, files: Sequence[Path], label: str,
                     shown: int = 5) -> list[str]:
    """Where (``file:line``) the first rows with ``label`` are; read again only for a label this rare."""
    column = resolved.columns[2]
    found: list[str] = []
    for path in files:
        for where, rec in iter_records(path, cfg.format, cfg.encoding):
            name = column if column is not None else next((c for c in LABEL_NAMES if c in rec), None)
            if name is not None and str(rec.get(name, "")).strip() == label:
                found.append(where)
                if len(found) == shown:
                    return found
    return found


def _infer_task(counts: Counter, train_file: Path) -> str:
    """Classification or regression, from the training labels of a corpus that does not say.

    Scores with a few words among them (a typo, a header line) are a regression corpus with bad rows, not a
    classification corpus with dozens of classes: regression is chosen and the re-read names each bad row.
    """
    numbers = {}
    for label in counts:
        try:
            numbers[label] = float(label)
        except ValueError:
            pass
    values = sorted(set(numbers.values()))
    if not values:
        return "classification"
    if len(numbers) < len(counts):
        numeric_rows = sum(counts[label] for label in numbers)
        if numeric_rows < 0.5 * sum(counts.values()) or not _looks_like_scores(values):
            return "classification"
    labels = sorted(numbers)
    fractions = [v for v in values if not v.is_integer()]
    if not _looks_like_scores(values):
        log.info("%s: the labels %s are whole numbers: trained as classes (set corpus.task=regression if they are "
                 "scores)", train_file, ", ".join(labels))
        return "classification"
    why = f"e.g. {fractions[0]:g}" if fractions else f"{len(values)} distinct values"
    log.warning("%s: the labels are numbers (%s, from %g to %g): training a regression model that predicts a "
                "score (set corpus.task=classification to treat them as classes)", train_file, why, values[0],
                values[-1])
    return "regression"


def _looks_like_scores(values: Sequence[float]) -> bool:
    """Numbers with fractions, or more distinct whole numbers than a label set usually has."""
    return any(not v.is_integer() for v in values) or len(values) > MAX_NUMERIC_CLASSES
