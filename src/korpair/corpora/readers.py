"""Reading one file of sentence pairs: CSV, TSV, JSONL or JSON, validated row by row.

Every problem in a file is reported with the file name and the line (or
record) number, all bad rows at once. Rows are never dropped silently:
dropped rows are counted per reason.

Example::

    pairs = read_pairs("dev.tsv")            # columns found from the header
    pairs[0].label                           # 'neutral'
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from korpair.corpora.votes import read_votes
from korpair.corpora.votes import vote_columns as votes_of
from korpair.errors import CorpusError
from korpair.types import Pair, ScoreRange

FORMATS = ("csv", "tsv", "jsonl", "json")
# Header names tried, in order, when the config names no column.
TEXT_A_NAMES = ("premise", "sentence1", "text_a", "text", "sentence_a", "question1")
TEXT_B_NAMES = ("hypothesis", "sentence2", "text_b", "text_pair", "sentence_b", "question2")
LABEL_NAMES = ("gold_label", "label", "labels", "score")
MAX_ERRORS_SHOWN = 10
ENCODING_NAMES = {"utf-8": "UTF-8", "cp949": "CP949 (EUC-KR family)", "utf-16": "UTF-16"}
# A lone UTF-16 surrogate (JSON "\ud800") is not a character: encoding or tokenizing it fails later.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# csv's default field limit (128 KiB) is too small for some long-document pair tasks.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def detect_format(path: Path, fmt: str = "auto") -> str:
    """The file format, from ``fmt`` or the extension."""
    if fmt != "auto":
        if fmt not in FORMATS:  # else an unknown one would silently be read as CSV
            raise CorpusError(f"{path}: unknown format {fmt!r}; pass one of {FORMATS} or 'auto'")
        return fmt
    suffix = _inner_suffix(path)
    if suffix in FORMATS:
        return suffix
    if suffix in ("txt", "tab"):
        return "tsv"
    raise CorpusError(f"{path}: cannot tell the format from the extension; pass format= one of {FORMATS}")


def _inner_suffix(path: Path) -> str:
    """The format's extension, under a ``.gz`` if there is one (``train.jsonl.gz`` -> ``jsonl``)."""
    if path.suffix.lower() == ".gz":
        path = Path(path.stem)
    return path.suffix.lower().lstrip(".")


def iter_records(path: Path, fmt: str = "auto", encoding: str = "utf-8") -> Iterator[tuple[str, dict]]:
    """Yield ``(where, record)`` for each row; ``where`` is ``file:line`` or ``file:record N``.

    Streams CSV, TSV and JSONL (a file larger than memory is fine); a JSON list is read whole. A file whose
    name ends in ``.gz`` is read through gzip (``train.jsonl.gz``).
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
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", encoding=enc, newline="") as fh:
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
    except OSError as err:  # unreadable (permissions, I/O error, not gzip): a user problem, not a crash
        raise CorpusError(f"{path}: cannot read: {err.strerror or err}") from None
    except EOFError:
        raise CorpusError(f"{path}: the gzip file is cut short (an interrupted download or copy?)") from None


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
                f"pass encoding={guess!r} (config: corpus.encoding={guess!r})")
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
    scores: ScoreRange | None = None,
    drop_empty: bool = False,
    drop_texts: Sequence[str] = (),
    vote_columns: Sequence[str] | None = None,
) -> list[Pair]:
    """Read and validate every pair of one file; all bad rows are reported at once.

    ``scores`` reads a regression file: each gold label must be a number in
    that range, and becomes a float. ``label_column`` may be a dotted path into
    a JSON object (``labels.label`` for KLUE-STS). ``drop_empty`` drops and
    counts rows with an empty text instead of reporting them; ``drop_texts``
    those where a text is one of these placeholders (PAWS-X's "NS").
    ``vote_columns`` hold one annotator's label each (``Pair.votes``); without
    them KLUE-NLI's ``author``, ``label2`` .. ``label5`` are read where present.

    Example::

        pairs = read_pairs("dev.tsv")            # columns found from the header
        pairs[0].label  # 'neutral'
        read_pairs("sts-dev.tsv", label_column="score", scores=ScoreRange(0, 5))[0].label  # 5.0
    """
    return list(iter_pairs(path, fmt=fmt, text_a_column=text_a_column, text_b_column=text_b_column,
                           label_column=label_column, require_label=require_label, labels=labels,
                           drop_labels=drop_labels, encoding=encoding, dropped=dropped, limit=limit, scores=scores,
                           drop_empty=drop_empty, drop_texts=drop_texts, vote_columns=vote_columns))


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
    scores: ScoreRange | None = None,
    drop_empty: bool = False,
    drop_texts: Sequence[str] = (),
    vote_columns: Sequence[str] | None = None,
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
    count, votes_in = 0, None
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
                if (name is None or not _has_field(rec, name)) and (what != "label" or require_label)
            ]
            if missing:
                raise CorpusError(
                    f"{where}: missing {'; '.join(missing)}; the columns are {keys}. "
                    "Name yours with text_a_column= / text_b_column= / label_column= "
                    "(config: corpus.text_a_column= / corpus.text_b_column= / corpus.label_column=)."
                )
            if lab is not None and not _has_field(rec, lab):
                lab = None
            cols = (a, b, lab)  # type: ignore[assignment]
            votes_in = votes_of(keys, vote_columns) if scores is None else None
        a, b, lab = cols
        try:
            premise, hypothesis = rec[a], rec[b]
        except KeyError as err:
            problems.append(f"{where}: missing field {err.args[0]!r}")
            if not strict:
                break
            continue
        label: str | float | None = None
        if lab is not None:
            raw_label = _field(rec, lab)
            if raw_label is None and require_label:
                problems.append(f"{where}: missing field {lab!r}")
                if not strict:
                    break
                continue
            if isinstance(raw_label, (dict, list)):
                problems.append(f"{where}: label field {lab!r} holds a JSON {type(raw_label).__name__}, not a "
                                f"label; name the value inside it, e.g. label_column='{lab}.label'")
                if not strict:
                    break
                continue
            label = None if raw_label is None else str(raw_label).strip()
            if label in drop_labels:
                dropped[f"{path.name}: gold label {label!r}"] += 1
                continue
        if drop_empty and all(isinstance(t, str) for t in (premise, hypothesis)) \
                and not (premise.strip() and hypothesis.strip()):
            dropped[f"{path.name}: empty text"] += 1
            continue
        placeholder = next((t for t in (premise, hypothesis) if isinstance(t, str) and t.strip() in drop_texts), None)
        if placeholder is not None:
            dropped[f"{path.name}: placeholder text {placeholder.strip()!r}"] += 1
            continue
        bad = _row_problem(premise, hypothesis, label, require_label, allowed)
        if not bad and scores is not None and label is not None:
            try:
                label = scores.parse(label)
            except ValueError as err:
                bad = str(err)
        votes = None
        if not bad and votes_in:
            votes, bad = read_votes(rec, votes_in, allowed)
        if bad:
            problems.append(f"{where}: {bad}")
            if not strict:
                break
            continue
        pair = Pair(premise.strip(), hypothesis.strip(), label, votes, _short_fields(rec, cols, votes_in))
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


def _short_fields(rec: dict, used: Sequence, votes: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    # what may name a slice of the data (source: wikinews): short texts in the row's other columns
    skip = {*used, *(votes or ())}
    return tuple((k, v) for k, v in rec.items() if k not in skip and isinstance(v, str) and 0 < len(v) <= 40)


def _has_field(rec: dict, name: str) -> bool:
    return name in rec or ("." in name and _field(rec, name) is not None)


def _field(rec: dict, name: str):
    """``rec[name]``, or for a dotted name missing at the top level the value it points to inside objects."""
    if name in rec or "." not in name:
        return rec.get(name)
    value = rec
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


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
