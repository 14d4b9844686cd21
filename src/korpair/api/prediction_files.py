"""``predict_file``'s two ends: pairs read as they are written, predictions written so that korpair reads them back.

The output format follows the file's extension:

- ``.jsonl``: one JSON object a line, ``{"premise", "hypothesis", "label", "scores"}``
  (``{"premise", "hypothesis", "score"}`` from a regression model); ``-`` streams it to stdout;
- ``.json``: the same objects in one JSON list;
- ``.csv``: columns ``premise, hypothesis, label, p_<label>...`` (or ``score``), quoted where a field
  needs it, as the CSV reader unquotes;
- ``.tsv``: the same columns, never quoted: quote characters are written as they are, as the TSV reader
  (which must read KorNLI's and KorSTS's bare quotes) reads them. A tab or a line break inside a TSV
  field cannot be told from the next field or row, so an input text holding one is an error naming its
  row, found before the model is loaded: write such texts to ``.jsonl``, ``.json`` or ``.csv``.

Texts are written verbatim, leading and trailing spaces included, so that the output read back as input
gives the same pairs and the same predictions.

Example::

    count = check_input(Path("pairs.tsv"), "auto", "utf-8", (None, None), "tsv")   # every row, before any work
    with prediction_writer(Path("out.tsv"), "tsv", ("entailment", "neutral", "contradiction")) as write:
        for where, pair in verbatim_pairs(Path("pairs.tsv"), "auto", "utf-8", (None, None)):
            ...
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from korpair.atomic import open_atomic
from korpair.corpora.readers import TEXT_A_NAMES, TEXT_B_NAMES, iter_pairs, iter_records
from korpair.errors import CorpusError, disk_full_as_error
from korpair.types import Pair, Prediction

# Characters that end a TSV field or row wherever they stand.
TSV_BREAKS = {"\t": "a tab", "\n": "a line break", "\r": "a carriage return"}


def check_input(path: Path, fmt: str, encoding: str, columns: tuple[str | None, str | None], out_format: str) -> int:
    """Read the whole input once, before any work: every bad row reported at once; returns the number of pairs.

    For TSV output a text holding a tab or a line break is an error naming its ``file:line``.
    """
    count = sum(1 for _ in iter_pairs(path, fmt=fmt, text_a_column=columns[0], text_b_column=columns[1],
                                      require_label=False, drop_labels=(), encoding=encoding, strict=True,
                                      eager=True))
    if out_format == "tsv":
        for where, pair in verbatim_pairs(path, fmt, encoding, columns):
            for name, text in (("first text", pair.premise), ("second text", pair.hypothesis)):
                breaks = [word for char, word in TSV_BREAKS.items() if char in text]
                if breaks:
                    raise CorpusError(f"{where}: the {name} holds {' and '.join(breaks)}, which a TSV field cannot "
                                      "hold (korpair writes TSV unquoted); write the predictions to a .jsonl, .json "
                                      "or .csv file instead")
    return count


def verbatim_pairs(path: Path, fmt: str, encoding: str,
                   columns: tuple[str | None, str | None]) -> Iterator[tuple[str, Pair]]:
    """``(file:line, pair)`` for each row of a file that ``check_input`` passed, the texts exactly as written.

    The readers strip the texts they hand to training; a prediction file echoes
    its input, so the texts come from the records here, in the columns the
    readers would pick.
    """
    picked: tuple[str, str] | None = None
    for where, record in iter_records(path, fmt, encoding):
        if picked is None:
            picked = (_column(record, columns[0], TEXT_A_NAMES), _column(record, columns[1], TEXT_B_NAMES))
        premise, hypothesis = (record.get(name) for name in picked)
        if not (isinstance(premise, str) and isinstance(hypothesis, str)):
            raise CorpusError(f"{where}: the row has no texts in {list(picked)}: did the file change while it "
                              "was read?")
        yield where, Pair(premise, hypothesis)


def _column(record: dict, given: str | None, candidates: Sequence[str]) -> str:
    return given if given is not None else next((name for name in candidates if name in record), candidates[0])


@contextlib.contextmanager
def prediction_writer(path: Path | str, out_format: str, labels: Sequence[str] | None
                      ) -> Iterator[Callable[[Pair, Prediction], None]]:
    """A function that writes one prediction, into a file that appears (replacing any old one) only when complete.

    ``labels`` are a classifier's label names (its ``p_*`` columns), ``None`` for
    a regression model. ``path`` ``-`` streams JSONL to stdout as it comes.
    """
    if str(path) == "-":
        yield _row_writer(sys.stdout, "jsonl", labels)
        sys.stdout.flush()
        return
    path = Path(path)
    newline = "" if out_format == "csv" else "\n"
    with disk_full_as_error(path), open_atomic(path, newline=newline) as fh:
        write = _row_writer(fh, out_format, labels)
        yield write
        if out_format == "json":
            fh.write("\n]\n" if write.rows else "[]\n")


class _row_writer:
    """Writes each (pair, prediction) as a row of ``out_format``; counts them in ``rows``."""

    def __init__(self, fh: IO[str], out_format: str, labels: Sequence[str] | None) -> None:
        self.fh, self.format, self.labels, self.rows = fh, out_format, labels, 0
        self.header = ["premise", "hypothesis", *(["label", *(f"p_{n}" for n in labels)] if labels else ["score"])]
        self.csv = csv.writer(fh) if out_format == "csv" else None
        if out_format in ("csv", "tsv"):
            self._fields(self.header)

    def __call__(self, pair: Pair, prediction: Prediction) -> None:
        if self.format in ("jsonl", "json"):
            row = json.dumps({"premise": pair.premise, "hypothesis": pair.hypothesis, **prediction.to_dict()},
                             ensure_ascii=False)
            if self.format == "json":
                row = ("[\n" if self.rows == 0 else ",\n") + row
            else:
                row += "\n"
            self.fh.write(row)
        elif self.labels:
            self._fields([pair.premise, pair.hypothesis, prediction.label,
                          *(f"{prediction.scores[n]:.6f}" for n in self.labels)])
        else:
            self._fields([pair.premise, pair.hypothesis, repr(float(prediction.score))])
        self.rows += 1

    def _fields(self, fields: list[str]) -> None:
        if self.csv is not None:
            self.csv.writerow(fields)
            return
        for field in fields:  # the input's texts were checked before the model was loaded; this is a label name
            if any(char in field for char in TSV_BREAKS):
                raise CorpusError(f"{field!r} holds a tab or a line break, which a TSV field cannot hold; write "
                                  "the predictions to a .jsonl, .json or .csv file instead")
        self.fh.write("\t".join(fields) + "\n")


class PairCount:
    """A running count of the pairs written, with the total, on stderr (stdout may carry the predictions)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

        self._bar = Progress(SpinnerColumn(), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                             console=Console(stderr=True), transient=False)
        self._bar.__enter__()
        self._task = self._bar.add_task("predict", total=self.total)
        return lambda n: self._bar.update(self._task, completed=n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.refresh()
            self._bar.__exit__(*exc)
