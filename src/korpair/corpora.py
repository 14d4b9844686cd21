"""Reading sentence pairs: files, built-in corpora, labels.

Everything that touches raw data lives here, and every problem in a file is
reported with the file name and the line (or record) number. Rows are never
dropped silently: dropped rows are counted per reason and reported.

>>> splits = load_splits(CorpusConfig(name="sample"))
>>> splits.labels.names
('entailment', 'neutral', 'contradiction')
>>> splits.train[0].premise
'...'
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from korpair.config import CorpusConfig
from korpair.errors import CorpusError, DownloadError

log = logging.getLogger(__name__)

NLI_LABELS = ("entailment", "neutral", "contradiction")
FORMATS = ("csv", "tsv", "jsonl", "json")
# Header names tried, in order, when the config names no column.
TEXT_A_NAMES = ("premise", "sentence1", "text_a", "text", "sentence_a", "question1")
TEXT_B_NAMES = ("hypothesis", "sentence2", "text_b", "text_pair", "sentence_b", "question2")
LABEL_NAMES = ("gold_label", "label", "labels")
MAX_ERRORS_SHOWN = 10
ENCODING_NAMES = {"utf-8": "UTF-8", "cp949": "CP949 (EUC-KR family)", "utf-16": "UTF-16"}
# A lone UTF-16 surrogate (JSON "\ud800") is not a character: encoding or tokenizing it fails later.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# csv's default field limit (128 KiB) is too small for some long-document pair tasks.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Pair:
    """Two texts and, when known, the gold label name."""

    premise: str
    hypothesis: str
    label: str | None = None


@dataclass(frozen=True)
class LabelMap:
    """Label names in id order; id ``i`` is ``names[i]``.

    >>> LabelMap(("yes", "no")).id("no")
    1
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise CorpusError(f"a classifier needs at least 2 labels, got {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise CorpusError(f"label names must be unique, got {list(self.names)}")

    def id(self, name: str) -> int:
        return self.names.index(name)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class PairStream:
    """A split read from its files again on every iteration, never held in memory.

    Made by ``stream_split`` after a first pass that checked every row (all bad
    rows reported at once), counted the pairs and dropped rows and collected
    the labels. ``key`` fixes the content without reading it: the files'
    sha256 and the reading options.

    >>> train = stream_split(CorpusConfig(name="kornli"), "train")
    >>> len(train), next(iter(train)).label
    (942854, 'entailment')
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


# ---------------------------------------------------------------- reading files


def detect_format(path: Path, fmt: str = "auto") -> str:
    """The file format, from ``fmt`` or the extension."""
    if fmt != "auto":
        if fmt not in FORMATS:  # else an unknown one would silently be read as CSV
            raise CorpusError(f"{path}: unknown format {fmt!r}; pass one of {FORMATS} or 'auto'")
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    if suffix in ("txt", "tab"):
        return "tsv"
    raise CorpusError(f"{path}: cannot tell the format from the extension; pass format= one of {FORMATS}")


def iter_records(path: Path, fmt: str = "auto", encoding: str = "utf-8") -> Iterator[tuple[str, dict]]:
    """Yield ``(where, record)`` for each row; ``where`` is ``file:line`` or ``file:record N``.

    Streams CSV, TSV and JSONL (a file larger than memory is fine); a JSON list is read whole.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    if not path.is_file():
        raise CorpusError(f"{path}: not a file")
    # utf-8-sig also reads files saved with a BOM (Excel, Notepad).
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        with open(path, encoding=enc, newline="") as fh:
            if fmt == "json":
                yield from _iter_json(path, fh)
            elif fmt == "jsonl":
                yield from _iter_jsonl(path, fh)
            else:
                yield from _iter_delimited(path, fh, "\t" if fmt == "tsv" else ",")
    except UnicodeDecodeError as err:
        raise CorpusError(_explain_decode_error(path, err, encoding)) from None
    except LookupError:
        raise CorpusError(f"{path}: unknown encoding {encoding!r}") from None
    except OSError as err:  # unreadable (permissions, I/O error): a user problem, not a crash
        raise CorpusError(f"{path}: cannot read: {err.strerror or err}") from None


def _iter_json(path: Path, fh: io.TextIOBase) -> Iterator[tuple[str, dict]]:
    try:
        data = json.load(fh)
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:  # e.g. "[[[[..." thousands deep: json's C scanner recurses per level
        raise CorpusError(f"{path}: invalid JSON: nested too deeply") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise CorpusError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise CorpusError(f"{path}:record {i}: expected an object, got {type(rec).__name__}")
        yield f"{path}:record {i}", rec


def _iter_jsonl(path: Path, fh: io.TextIOBase) -> Iterator[tuple[str, dict]]:
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(f"{path}:{lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
        except RecursionError:
            raise CorpusError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
        if not isinstance(rec, dict):
            raise CorpusError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        yield f"{path}:{lineno}", rec


def _iter_delimited(path: Path, fh: io.TextIOBase, delimiter: str) -> Iterator[tuple[str, dict]]:
    # TSV corpora (KorNLI, KorSTS) put bare quote characters inside fields: no quoting for TSV.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise CorpusError(f"{path}: empty file (expected a header line)") from None
    except csv.Error as err:
        raise CorpusError(f"{path}:1: {err}") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise CorpusError(f"{path}:1: duplicate column names in header {header}")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise CorpusError(f"{path}:{reader.line_num}: {err}") from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise CorpusError(
                f"{path}:{reader.line_num}: expected {len(header)} fields ({', '.join(header)}), "
                f"found {len(row)}"
            )
        yield f"{path}:{reader.line_num}", dict(zip(header, row))


def _explain_decode_error(path: Path, err: UnicodeDecodeError, encoding: str) -> str:
    raw = path.read_bytes()
    # The decoder's offset is within its last chunk, so find the first bad line ourselves.
    lineno = 1
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode(encoding)
        except UnicodeDecodeError:
            break
    # UTF-16 without a byte order mark is never guessed: nearly any even-length bytes decode as UTF-16.
    guesses = [g for g in ("utf-8", "cp949") if codecs.lookup(g).name != codecs.lookup(encoding).name]
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        guesses.insert(0, "utf-16")
    for guess in guesses:
        try:
            raw.decode(guess)
        except UnicodeDecodeError:
            continue
        return (f"{path}:{lineno}: not valid {encoding} text; it looks like {ENCODING_NAMES[guess]}: "
                f"pass encoding={guess!r} (CLI: --encoding {guess}, or --set corpus.encoding={guess})")
    tried = " or ".join(ENCODING_NAMES[g] for g in guesses)
    return f"{path}:{lineno}: not valid {encoding} text (nor {tried}): is it a text file?"


def _pick_column(keys: Sequence[str], wanted: str | None, candidates: Sequence[str]) -> str | None:
    if wanted is not None:
        return wanted
    for name in candidates:
        if name in keys:
            return name
    return None


def read_pairs(
    path: str | Path,
    *,
    fmt: str = "auto",
    text_a_column: str | None = None,
    text_b_column: str | None = None,
    label_column: str | None = None,
    require_label: bool = True,
    labels: Sequence[str] | None = None,
    drop_labels: Sequence[str] = ("-",),
    encoding: str = "utf-8",
    dropped: Counter | None = None,
    limit: int | None = None,
) -> list[Pair]:
    """Read and validate every pair of one file; all bad rows are reported at once.

    >>> pairs = read_pairs("dev.tsv")            # columns found from the header
    >>> pairs[0].label
    'neutral'
    """
    return list(
        iter_pairs(
            path,
            fmt=fmt,
            text_a_column=text_a_column,
            text_b_column=text_b_column,
            label_column=label_column,
            require_label=require_label,
            labels=labels,
            drop_labels=drop_labels,
            encoding=encoding,
            dropped=dropped,
            limit=limit,
        )
    )


def iter_pairs(
    path: str | Path,
    *,
    fmt: str = "auto",
    text_a_column: str | None = None,
    text_b_column: str | None = None,
    label_column: str | None = None,
    require_label: bool = True,
    labels: Sequence[str] | None = None,
    drop_labels: Sequence[str] = ("-",),
    encoding: str = "utf-8",
    dropped: Counter | None = None,
    limit: int | None = None,
    strict: bool = True,
    eager: bool = False,
) -> Iterator[Pair]:
    """Stream pairs from one file (see ``read_pairs``).

    With ``strict`` (the default) nothing is yielded from a file with bad rows
    only up to the first one; the error lists every bad row found in the file.
    Streaming callers that cannot hold the file pass ``strict=False`` and get
    an error at the first bad row. ``strict`` and ``eager`` together yield each
    good pair as it is read (nothing is held) and raise the error listing every
    bad row after the last pair: for a first pass that only checks and counts.
    """
    path = Path(path)
    dropped = dropped if dropped is not None else Counter()
    allowed = set(labels) if labels is not None else None
    problems: list[str] = []
    good: list[Pair] = []
    cols: tuple[str, str, str | None] | None = None
    count = 0
    for where, rec in iter_records(path, fmt, encoding):
        if cols is None:
            keys = list(rec.keys())
            a = _pick_column(keys, text_a_column, TEXT_A_NAMES)
            b = _pick_column(keys, text_b_column, TEXT_B_NAMES)
            lab = _pick_column(keys, label_column, LABEL_NAMES)
            missing = [
                f"{what} column {name!r}" if name else f"a {what} column (tried {', '.join(cands)})"
                for what, name, cands in (
                    ("first text", a, TEXT_A_NAMES),
                    ("second text", b, TEXT_B_NAMES),
                    ("label", lab, LABEL_NAMES),
                )
                if (name is None or name not in keys) and (what != "label" or require_label)
            ]
            if missing:
                raise CorpusError(
                    f"{where}: missing {'; '.join(missing)}; the columns are {keys}. "
                    "Name yours with text_a_column / text_b_column / label_column "
                    "(CLI: --text-a / --text-b / --label-column)."
                )
            if lab is not None and lab not in keys:
                lab = None
            cols = (a, b, lab)  # type: ignore[assignment]
        a, b, lab = cols
        try:
            premise, hypothesis = rec[a], rec[b]
        except KeyError as err:
            problems.append(f"{where}: missing field {err.args[0]!r}")
            if not strict:
                break
            continue
        label = None
        if lab is not None:
            raw_label = rec.get(lab)
            if raw_label is None and require_label:
                problems.append(f"{where}: missing field {lab!r}")
                if not strict:
                    break
                continue
            label = None if raw_label is None else str(raw_label).strip()
            if label in drop_labels:
                dropped[f"{path.name}: gold label {label!r}"] += 1
                continue
        bad = _row_problem(premise, hypothesis, label, require_label, allowed)
        if bad:
            problems.append(f"{where}: {bad}")
            if not strict:
                break
            continue
        pair = Pair(premise.strip(), hypothesis.strip(), label)
        if strict and not eager:
            good.append(pair)
        else:
            yield pair
        count += 1
        if limit is not None and count >= limit:
            break
    if problems:
        shown = "\n  ".join(problems[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(problems) - MAX_ERRORS_SHOWN} more" if len(problems) > MAX_ERRORS_SHOWN else ""
        raise CorpusError(f"{path}: {len(problems)} bad row(s):\n  {shown}{more}")
    if cols is None:
        raise CorpusError(f"{path}: no rows")
    yield from good


def _row_problem(premise, hypothesis, label, require_label, allowed) -> str | None:
    for name, text in (("first text", premise), ("second text", hypothesis)):
        if not isinstance(text, str):
            return f"{name} must be a string, got {type(text).__name__}"
        if not text.strip():
            return f"empty {name}"
    for name, text in (("first text", premise), ("second text", hypothesis), ("label", label or "")):
        bad = LONE_SURROGATE.search(text)
        if bad:
            return f"{name} holds a lone surrogate {bad.group()!r} at character {bad.start()} (not valid Unicode)"
    if require_label and not label:
        return "empty label"
    if allowed is not None and label is not None and label not in allowed:
        return f"unknown label {label!r}; expected one of {sorted(allowed)}"
    return None


# ---------------------------------------------------------------- built-in corpora


@dataclass(frozen=True)
class RemoteFile:
    """One file of a built-in corpus and the places it can be fetched from."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None  # None where no trusted digest is published; then size > 0 and parse are the check
    member: str | None = None  # path inside a .tar.gz, when the url is an archive


@dataclass(frozen=True)
class BuiltinCorpus:
    name: str
    splits: dict[str, tuple[RemoteFile, ...]]
    labels: tuple[str, ...]
    columns: tuple[str, str, str]
    homepage: str
    license: str


_KLUE_TAR = "https://aistages-prod-server-public.s3.amazonaws.com/app/Competitions/000068/data/klue-nli-v1.1.tar.gz"
_KLUE_RAW = "https://raw.githubusercontent.com/KLUE-benchmark/KLUE/main/klue_benchmark/klue-nli-v1.1/"
_KORNLI_RAW = "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/KorNLI/"
_KORNLI_GH = "https://github.com/kakaobrain/kor-nlu-datasets/raw/master/KorNLI/"


def _klue(name: str, sha: str | None) -> RemoteFile:
    return RemoteFile(name, (_KLUE_TAR, _KLUE_RAW + name), sha, member=f"klue-nli-v1.1/{name}")


def _kornli(name: str, sha: str | None) -> RemoteFile:
    return RemoteFile(name, (_KORNLI_RAW + name, _KORNLI_GH + name), sha)


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "klue-nli": BuiltinCorpus(
        name="klue-nli",
        splits={
            "train": (_klue("klue-nli-v1.1_train.json", None),),
            # KLUE publishes no test labels: its dev set is the usual validation set.
            "validation": (
                _klue(
                    "klue-nli-v1.1_dev.json",
                    "0699db82be17766b26e199864e6260443e17ec6e91d1870e876419e388f245b1",
                ),
            ),
        },
        labels=NLI_LABELS,
        columns=("premise", "hypothesis", "gold_label"),
        homepage="https://klue-benchmark.com",
        license="CC BY-SA 4.0",
    ),
    "kornli": BuiltinCorpus(
        name="kornli",
        splits={
            "train": (_kornli("multinli.train.ko.tsv", None), _kornli("snli_1.0_train.ko.tsv", None)),
            "validation": (
                _kornli(
                    "xnli.dev.ko.tsv", "821fb1c1c2e538ac2724a6132da36ffa379eb9a542ceb89243b3cf711377382c"
                ),
            ),
            "test": (_kornli("xnli.test.ko.tsv", None),),
        },
        labels=NLI_LABELS,
        columns=("sentence1", "sentence2", "gold_label"),
        homepage="https://github.com/kakaobrain/KorNLUDatasets",
        license="CC BY-SA 4.0",
    ),
}


def default_data_dir(name: str) -> Path:
    root = os.environ.get("KORPAIR_HOME") or Path.home() / ".cache" / "korpair"
    return Path(root) / "corpora" / name


def sample_corpus_dir() -> Path:
    """The folder of the small Korean NLI corpus shipped with korpair."""
    return Path(str(resources.files("korpair") / "resources" / "sample_nli"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_corpus(name: str, data_dir: Path | None = None, splits: Sequence[str] | None = None,
                 download: bool = True, retries: int = 3) -> dict[str, list[Path]]:
    """Make sure a built-in corpus's files are in ``data_dir``; download the missing ones.

    Returns the local files of each split. With no network (or ``download=False``)
    the error lists the files to fetch by hand and where to put them.
    """
    corpus = BUILTIN_CORPORA[name]
    data_dir = Path(data_dir) if data_dir else default_data_dir(name)
    wanted = splits or list(corpus.splits)
    out: dict[str, list[Path]] = {}
    missing: list[RemoteFile] = []
    for split in wanted:
        out[split] = []
        for remote in corpus.splits[split]:
            local = data_dir / remote.filename
            out[split].append(local)
            if not local.is_file():
                missing.append(remote)
    if missing and download:
        data_dir.mkdir(parents=True, exist_ok=True)
        failures = []
        for remote in missing:
            try:
                _download(remote, data_dir / remote.filename, retries)
            except DownloadError as err:
                failures.append(str(err))
        if failures:
            raise DownloadError(
                "\n".join(failures) + "\n" + _manual_instructions(name, missing, data_dir)
            )
    elif missing:
        raise DownloadError(f"{name}: files missing and download is off.\n" + _manual_instructions(name, missing, data_dir))
    for files in out.values():
        for local in files:
            _verify(local, next(r for s in corpus.splits.values() for r in s if r.filename == local.name))
    return out


def _manual_instructions(name: str, missing: Sequence[RemoteFile], data_dir: Path) -> str:
    lines = [f"Fetch these {name} files yourself and put them in {data_dir}/ (or pass --data-dir):"]
    for r in missing:
        src = r.urls[-1] if r.member else r.urls[0]
        lines.append(f"  {r.filename}  <-  {src}")
    return "\n".join(lines)


def _download(remote: RemoteFile, target: Path, retries: int) -> None:
    errors = []
    for url in remote.urls:
        for attempt in range(retries):
            try:
                log.info("downloading %s (try %d)", url, attempt + 1)
                _download_once(url, remote, target)
                _verify(target, remote)
                return
            except (urllib.error.URLError, OSError, TimeoutError, tarfile.TarError) as err:
                errors.append(f"{url}: {err}")
                time.sleep(min(2**attempt, 8) if attempt + 1 < retries else 0)
            except DownloadError as err:  # checksum mismatch: try the next source, not the same one
                errors.append(str(err))
                target.unlink(missing_ok=True)
                break
    raise DownloadError(f"could not download {remote.filename}: " + "; ".join(errors[-3:]))


def _download_once(url: str, remote: RemoteFile, target: Path) -> None:
    # Write to a temporary file in the same folder, then rename: never a half file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            if url.endswith(".tar.gz") and remote.member:
                with tarfile.open(fileobj=resp, mode="r|gz") as tar:
                    for info in tar:
                        if info.name.lstrip("./") == remote.member and info.isfile():
                            shutil.copyfileobj(tar.extractfile(info), out)
                            break
                    else:
                        raise DownloadError(f"{url}: archive has no {remote.member}")
            else:
                shutil.copyfileobj(resp, out)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _verify(path: Path, remote: RemoteFile) -> None:
    if path.stat().st_size == 0:
        path.unlink()
        raise DownloadError(f"{path}: empty download")
    if remote.sha256 and sha256_file(path) != remote.sha256:
        raise DownloadError(
            f"{path}: checksum mismatch (expected sha256 {remote.sha256}); delete it and download again"
        )


# ---------------------------------------------------------------- splits


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
