"""Hostile corpus files: every reader either reads back exactly what was written, or fails with a
CorpusError that names the file and the line (or record). Nothing else escapes, nothing hangs.

The readers: ``read_pairs`` and ``iter_pairs`` (strict and not), over CSV, TSV, JSONL and JSON.
Texts come from a Korean-heavy alphabet (Hangul syllables, jamo, emoji, quotes, commas, odd
whitespace, control characters). TSV fields are read without quoting, so TSV texts hold no tab or
line break; a stray tab must give the wrong-field-count error with its line number instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from korpair.corpora import FORMATS, iter_pairs, read_pairs
from korpair.errors import CorpusError
from korpair.types import Pair

# A generous deadline: other jobs share this machine's 2 cores, and a real hang blows through any deadline.
# The examples per property keep the whole file well under 40 s.
FUZZ = settings(max_examples=150, deadline=timedelta(seconds=5),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(FUZZ, max_examples=40)

# --- texts -----------------------------------------------------------------------------------------------

HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
JAMO = st.characters(min_codepoint=0x1100, max_codepoint=0x11FF) | st.characters(min_codepoint=0x3131,
                                                                                   max_codepoint=0x318E)
EMOJI = st.sampled_from(["😀", "👍🏽", "🇰🇷", "👨‍👩‍👧", "❤️", "🙏"])
PUNCT = st.sampled_from(list(' ,.,,""\'\'“”‘’「」『』…·!?~()[]{}\\;:/-_=+#@%&*<>|`^'))
ODD_SPACE = st.sampled_from(["\u3000", "\u00a0", "\u200b", "\u200d", "\ufeff", "\u2028", "\x85", "\x0b", "\x0c",
                             "\x1c", "\x1e", "\x00", "\x7f", "\u202e", "e\u0301"])
ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
ANY_CHAR = st.characters(exclude_categories=("Cs",))  # anything UTF-8 can hold
NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])
# Hangul three times over: most generated characters are Korean, as in the corpora.
PIECE = st.one_of(HANGUL, HANGUL, HANGUL, JAMO, EMOJI, PUNCT, ASCII, ODD_SPACE, ANY_CHAR)


def texts(extra: st.SearchStrategy[str] | None = None, forbid: str = "", max_size: int = 30) -> st.SearchStrategy[str]:
    """Non-blank texts of the Korean-heavy alphabet (plus ``extra`` pieces), without the ``forbid`` characters."""
    piece = PIECE if extra is None else st.one_of(PIECE, extra)
    text = st.lists(piece, min_size=1, max_size=max_size).map("".join)
    if forbid:
        text = text.map(lambda t: "".join(c for c in t if c not in forbid))
    return text.filter(lambda t: t.strip() != "")


LABELS = st.sampled_from(["entailment", "neutral", "contradiction", "함의", "모순", "5.000", "0.4", "1"])


def label_texts(forbid: str = "") -> st.SearchStrategy[str]:
    return LABELS | texts(forbid=forbid, max_size=8).filter(lambda t: t.strip() != "-")  # "-" rows are dropped


TSV_FORBID = "\t\n\r"
ROWS = {
    "csv": st.lists(st.tuples(texts(NEWLINES | st.just("\t")), texts(NEWLINES), label_texts()), min_size=1,
                    max_size=8),
    "tsv": st.lists(st.tuples(texts(forbid=TSV_FORBID), texts(forbid=TSV_FORBID), label_texts(TSV_FORBID)),
                    min_size=1, max_size=8),
    "jsonl": st.lists(st.tuples(texts(NEWLINES | st.just("\t")), texts(), label_texts()), min_size=1, max_size=8),
    "json": st.lists(st.tuples(texts(NEWLINES | st.just("\t")), texts(), label_texts()), min_size=1, max_size=8),
}
HEADERS = [("premise", "hypothesis", "label"), ("sentence1", "sentence2", "gold_label"),
           ("genre", "filename", "year", "id", "score", "sentence1", "sentence2")]  # the last: KorSTS's shape


def label_column(header: tuple[str, ...]) -> str | None:
    return "score" if "score" in header else None  # KorSTS labels its pairs with a similarity score


# --- writing files ----------------------------------------------------------------------------------------


def render(fmt: str, rows, header=HEADERS[0], newline: str = "\n", bom: bool = False, ascii_json: bool = False,
           wrap_json: bool = False) -> str:
    """A file in ``fmt`` holding ``rows`` of (premise, hypothesis, label), as a user's tool would write it."""
    records = [_record(header, row, i) for i, row in enumerate(rows)]
    if fmt == "tsv":
        text = newline.join("\t".join(fields) for fields in [header, *records]) + newline
    elif fmt == "csv":
        buffer = io.StringIO()
        minimal = csv.writer(buffer, lineterminator=newline)
        # Python 3.11's QUOTE_MINIMAL leaves a lone "\r" unquoted when the terminator is "\n"; RFC 4180 quotes
        # every field holding a line break, as Excel and LibreOffice do.
        quote_all = csv.writer(buffer, lineterminator=newline, quoting=csv.QUOTE_ALL)
        for fields in [header, *records]:
            breaks = any("\r" in f or "\n" in f for f in fields)
            (quote_all if breaks else minimal).writerow(fields)
        text = buffer.getvalue()
    elif fmt == "jsonl":
        text = "".join(json.dumps(dict(zip(header, r)), ensure_ascii=ascii_json) + newline for r in records)
    else:
        data = [dict(zip(header, r)) for r in records]
        text = json.dumps({"version": "1", "data": data} if wrap_json else data, ensure_ascii=ascii_json, indent=1)
        text = text.replace("\n", newline)
    return ("\ufeff" if bom else "") + text


def _record(header, row, i) -> tuple[str, ...]:
    premise, hypothesis, label = row
    if len(header) == 3:
        return premise, hypothesis, label
    return "main-captions", "MSRvid", "2012test", f"{i:04d}", label, premise, hypothesis


def expected(rows) -> list[Pair]:
    return [Pair(p.strip(), h.strip(), lab.strip()) for p, h, lab in rows]


def write(folder: Path, fmt: str, data: str | bytes, name: str = "corpus") -> Path:
    path = folder / f"{name}.{fmt}"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# --- reading files ---------------------------------------------------------------------------------------

READERS = {
    "read_pairs": lambda path, **kw: read_pairs(path, **kw),
    "iter_pairs strict": lambda path, **kw: list(iter_pairs(path, **kw)),
    "iter_pairs non-strict": lambda path, **kw: list(iter_pairs(path, strict=False, **kw)),
}


def read_every_way(path: Path, **kwargs) -> dict[str, list[Pair] | CorpusError]:
    """Each reader's pairs or CorpusError; any other exception escapes and fails the test."""
    results: dict[str, list[Pair] | CorpusError] = {}
    for name, reader in READERS.items():
        try:
            results[name] = reader(path, **kwargs)
        except CorpusError as err:
            results[name] = err
    return results


WHERE = r"(?P<where>:(?P<line>\d+)|:record (?P<record>\d+))"
WHOLE_FILE_PROBLEMS = ("empty file", "no rows", "expected a JSON list", "nested too deeply", "bad row(s)",
                       "missing a first text column", "missing a second text column", "missing a label column")


def assert_clear_error(err: CorpusError, path: Path, raw: bytes) -> None:
    """The message starts with the file; a row problem names a line (or JSON record) that is in the file."""
    message = str(err)
    first, *rest = message.splitlines()
    assert first.startswith(f"{path}"), message
    assert "Traceback" not in message
    m = re.match(WHERE + r": \S", first[len(str(path)):])
    if m is None:
        assert first.startswith(f"{path}: ") and any(p in first for p in WHOLE_FILE_PROBLEMS), message
    else:
        _assert_in_file(m, raw, message)
    if "bad row(s)" in first:  # every row listed by place
        for line in rest:
            if line.strip().startswith("..."):
                continue
            m = re.match(rf"  {re.escape(str(path))}{WHERE}: \S", line)
            assert m, message
            _assert_in_file(m, raw, message)


def _assert_in_file(m: re.Match, raw: bytes, message: str) -> None:
    if m["line"] is not None:
        assert 1 <= int(m["line"]) <= raw.count(b"\n") + raw.count(b"\r") + 1, message
    else:
        assert int(m["record"]) >= 1, message


def assert_read_back(path: Path, pairs: list[Pair], **kwargs) -> None:
    for name, got in read_every_way(path, **kwargs).items():
        assert not isinstance(got, CorpusError), f"{name}: {got}"
        assert got == pairs, name


# --- round trips -------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(FORMATS), header=st.sampled_from(HEADERS), newline=NEWLINES,
       bom=st.booleans(), ascii_json=st.booleans(), wrap_json=st.booleans())
def test_written_pairs_read_back_identical(tmp_path, data, fmt, header, newline, bom, ascii_json, wrap_json):
    rows = data.draw(ROWS[fmt], label="rows")
    path = write(tmp_path, fmt, render(fmt, rows, header, newline, bom, ascii_json, wrap_json))
    assert_read_back(path, expected(rows), label_column=label_column(header))


@FEW
@given(data=st.data(), fmt=st.sampled_from(FORMATS), header=st.sampled_from(HEADERS))
def test_cp949_files_read_with_the_encoding_and_are_named_without_it(tmp_path, data, fmt, header):
    korean = st.lists(st.one_of(HANGUL, HANGUL, st.sampled_from(list(' ,."\'!?')), ASCII),
                      min_size=1, max_size=20).map("".join).filter(lambda t: t.strip() not in ("", "-"))
    rows = data.draw(st.lists(st.tuples(korean, korean, korean), min_size=1, max_size=6), label="rows")
    if fmt == "tsv":
        rows = [tuple(t.replace("\t", " ") for t in row) for row in rows]
    raw = render(fmt, rows, header).encode("cp949")
    path = write(tmp_path, fmt, raw)
    kw = {"label_column": label_column(header)}
    assert_read_back(path, expected(rows), encoding="cp949", **kw)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        assume(False)  # these CP949 bytes happen to be valid UTF-8 too (e.g. 쳅 is C3 A1, UTF-8's "á")
    bad_line = next(i for i, line in enumerate(raw.split(b"\n"), 1) if not _is_utf8(line))
    for name, got in read_every_way(path, **kw).items():
        assert isinstance(got, CorpusError), name
        assert re.match(rf"{re.escape(str(path))}:{bad_line}: not valid utf-8 text; it looks like CP949 .*"
                        r"encoding='cp949'", str(got)), str(got)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("fmt", FORMATS)
def test_very_long_lines_read_back(tmp_path, fmt):
    # 300 000 characters (~900 KB in UTF-8): past csv's default 128 KiB field limit and any read buffer.
    long_text = ("가나다라 마바사 \"아자\" 차카타파하, " * 15_000)[:300_000].strip()
    rows = [(long_text, "짧은 가설", "neutral"), ("짧은 전제", long_text[::-1].strip(), "entailment")]
    path = write(tmp_path, fmt, render(fmt, rows))
    assert_read_back(path, expected(rows))


def test_korsts_style_tsv_reads_with_the_score_as_label(tmp_path):
    # KorSTS's columns, with bare and unbalanced quotes in the sentences (texts written here, not copied).
    text = ("genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
            'main-news\theadlines\t2015\t0001\t4.200\t그가 "안녕"이라고 말했다.\t그는 "안녕 이라고 했다.\n'
            "main-forum\tanswers\t2016\t0002\t0.500\t'작은따옴표' 문장.\t\"\"\"세 개\n")
    pairs = read_pairs(write(tmp_path, "tsv", text), label_column="score")
    assert pairs == [Pair('그가 "안녕"이라고 말했다.', '그는 "안녕 이라고 했다.', "4.200"),
                     Pair("'작은따옴표' 문장.", '"""세 개', "0.500")]


def test_the_real_korsts_files_read_with_the_score_as_label():
    folder = SHARED_DATA / "korsts"
    if not (folder / "sts-dev.tsv").is_file():
        pytest.skip("KorSTS is not in shared/data on this machine")
    for name in ("sts-train.tsv", "sts-dev.tsv", "sts-test.tsv"):
        pairs = read_pairs(folder / name, label_column="score")
        assert len(pairs) > 1000 and all(0 <= float(p.label) <= 5 for p in pairs)


# --- broken files --------------------------------------------------------------------------------------------

INSERTS = st.sampled_from([b"\t", b"\n", b"\r", b"\r\n", b'"', b"'", b",", b"{", b"}", b"[", b"]", b"\x00",
                           b"\xff", b"\xc3", b"\xea\xb0", b"\xef\xbb\xbf", b"\xb0\xa1", b"\\", b'\\"', b"\\ud800"])


@st.composite
def broken_files(draw, fmt: str) -> bytes:
    """Random bytes, or a valid file truncated, spliced or with hostile bytes inserted."""
    kind = draw(st.sampled_from(["random", "truncated", "inserted", "deleted"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    rows = draw(ROWS[fmt])
    raw = render(fmt, rows, draw(st.sampled_from(HEADERS)), draw(NEWLINES), bom=draw(st.booleans())).encode()
    at = draw(st.integers(0, len(raw)))
    if kind == "truncated":
        return raw[:at]
    if kind == "deleted":
        return raw[:at] + raw[at + draw(st.integers(1, 20)):]
    return raw[:at] + draw(INSERTS) + raw[at:]


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(FORMATS), header_score=st.booleans())
def test_broken_files_parse_or_fail_with_a_clear_error(tmp_path, data, fmt, header_score):
    raw = data.draw(broken_files(fmt), label="file")
    path = write(tmp_path, fmt, raw)
    results = read_every_way(path, label_column="score" if header_score else None)
    for name, got in results.items():
        if isinstance(got, CorpusError):
            assert_clear_error(got, path, raw)
        else:
            assert all(isinstance(p, Pair) and p.premise.strip() and p.hypothesis.strip() for p in got), name
    strict = results["read_pairs"]
    for name in ("iter_pairs strict", "iter_pairs non-strict"):  # the same outcome, streamed or not
        assert isinstance(results[name], CorpusError) == isinstance(strict, CorpusError), (name, results)
    if not isinstance(strict, CorpusError):
        assert results["iter_pairs strict"] == results["iter_pairs non-strict"] == strict


@FEW
@given(rows=ROWS["tsv"], data=st.data(), header=st.sampled_from(HEADERS), newline=st.sampled_from(["\n", "\r\n"]))
def test_a_stray_tab_in_a_tsv_field_names_its_line(tmp_path, rows, data, header, newline):
    k = data.draw(st.integers(0, len(rows) - 1), label="row")
    premise, hypothesis, label = rows[k]
    where = data.draw(st.sampled_from(["premise", "hypothesis"]))
    text = premise if where == "premise" else hypothesis
    at = data.draw(st.integers(0, len(text)))
    text = text[:at] + "\t" + text[at:]
    rows[k] = (text, hypothesis, label) if where == "premise" else (premise, text, label)
    path = write(tmp_path, "tsv", render("tsv", rows, header, newline))
    for name, got in read_every_way(path, label_column=label_column(header)).items():
        assert isinstance(got, CorpusError), name
        # line 1 is the header, so row k is on line k + 2
        assert re.match(rf"{re.escape(str(path))}:{k + 2}: expected {len(header)} fields .* found {len(header) + 1}$",
                        str(got)), str(got)


@FEW
@given(rows=ROWS["tsv"], data=st.data())
def test_a_line_break_in_a_tsv_field_names_its_line(tmp_path, rows, data):
    k = data.draw(st.integers(0, len(rows) - 1), label="row")
    premise, hypothesis, label = rows[k]
    premise = premise.strip() + data.draw(st.sampled_from(["\n", "\r\n", "\r"])) + "이어지는 문장"
    rows[k] = (premise, hypothesis, label)
    path = write(tmp_path, "tsv", render("tsv", rows))
    for name, got in read_every_way(path).items():
        assert isinstance(got, CorpusError), name
        assert re.match(rf"{re.escape(str(path))}:{k + 2}: expected 3 fields .* found 1$", str(got)), str(got)


@FEW
@given(fmt=st.sampled_from(FORMATS), data=st.data())
def test_bad_rows_all_listed_when_strict_and_the_first_stops_a_stream(tmp_path, fmt, data):
    rows = data.draw(st.lists(st.tuples(texts(forbid=TSV_FORBID), texts(forbid=TSV_FORBID),
                                        st.sampled_from(["entailment", "neutral"])), min_size=2, max_size=10))
    bad = sorted(data.draw(st.sets(st.integers(0, len(rows) - 1), min_size=1), label="bad rows"))
    for k in bad:  # a blank premise or a label outside the allowed ones
        rows[k] = data.draw(st.sampled_from([(" \u3000", rows[k][1], rows[k][2]), (rows[k][0], rows[k][1], "maybe")]))
    path = write(tmp_path, fmt, render(fmt, rows))
    place = (lambda k: f"record {k + 1}") if fmt == "json" else (lambda k: str(k + 1 + (fmt in ("csv", "tsv"))))
    allowed = ["entailment", "neutral"]

    with pytest.raises(CorpusError) as strict:
        read_pairs(path, labels=allowed)
    assert f"{path}: {len(bad)} bad row(s)" in str(strict.value)
    for k in bad[:10]:
        assert f"{path}:{place(k)}: " in str(strict.value)

    streamed = []
    with pytest.raises(CorpusError) as stream:
        for pair in iter_pairs(path, labels=allowed, strict=False):
            streamed.append(pair)
    assert streamed == expected(rows[: bad[0]])  # every good row before the first bad one, then the error
    assert f"{path}: 1 bad row(s):\n  {path}:{place(bad[0])}: " in str(stream.value)


@pytest.mark.parametrize("strict", [True, False])
def test_a_record_missing_a_field_later_in_the_file(tmp_path, strict):
    rows = [{"premise": "비가 온다", "hypothesis": "날씨가 맑다", "label": "neutral"}] * 3
    rows[1] = {"premise": "비가 온다", "label": "neutral"}
    path = write(tmp_path, "jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    got = []
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:2: missing field 'hypothesis'"):
        for pair in iter_pairs(path, strict=strict):
            got.append(pair)
    assert got == ([] if strict else [Pair("비가 온다", "날씨가 맑다", "neutral")])  # nothing after the bad row


# --- the nastiest inputs, one by one ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_deeply_nested_json_is_an_error_not_a_recursion_crash(tmp_path, fmt):
    path = write(tmp_path, fmt, b"[" * 100_000 + b"\n")
    for got in read_every_way(path).values():
        assert isinstance(got, CorpusError) and "nested too deeply" in str(got)
        assert_clear_error(got, path, path.read_bytes())


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("field", ["premise", "hypothesis", "label"])
def test_a_lone_surrogate_is_a_bad_row_not_a_crash_later(tmp_path, fmt, field):
    # JSON can escape half a UTF-16 pair ("\ud800"); it is no character, and tokenizing it fails mid-training.
    rows = [{"premise": "비가 온다", "hypothesis": "날씨가 맑다", "label": "neutral"} for _ in range(2)]
    rows[1][field] = "반쪽 \ud800 문자"
    text = "".join(json.dumps(r) + "\n" for r in rows) if fmt == "jsonl" else json.dumps(rows, indent=1)
    path = write(tmp_path, fmt, text)
    place = "2" if fmt == "jsonl" else "record 2"
    for got in read_every_way(path).values():
        assert isinstance(got, CorpusError)
        assert f"{path}:{place}: " in str(got) and "lone surrogate '\\ud800'" in str(got)


def test_bom_and_crlf_together(tmp_path):
    rows = [("비가 온다", '그는 "네"라고, 말했다', "neutral"), ("😀 좋다", "ᄀ\u1161ᆨ", "entailment")]
    for fmt in FORMATS:
        path = write(tmp_path, fmt, render(fmt, rows, newline="\r\n", bom=True))
        assert_read_back(path, expected(rows))


def test_a_file_in_utf8_read_as_cp949_points_to_utf8(tmp_path):
    path = write(tmp_path, "tsv", "sentence1\tsentence2\tgold_label\n비가 온다\t날씨가 맑다\tneutral\n")
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:2: not valid cp949 text; it looks like UTF-8"):
        read_pairs(path, encoding="cp949")


def test_utf16_is_guessed_only_from_its_byte_order_mark(tmp_path):
    text = "sentence1\tsentence2\tgold_label\n비가 온다\t날씨가 맑다\tneutral\n"
    path = write(tmp_path, "tsv", text.encode("utf-16"))
    with pytest.raises(CorpusError, match=r"not valid utf-8 text; it looks like UTF-16: pass encoding='utf-16'"):
        read_pairs(path)
    assert read_pairs(path, encoding="utf-16") == [Pair("비가 온다", "날씨가 맑다", "neutral")]
    # Binary junk of even length decodes as UTF-16 too, so no such guess for it.
    path = write(tmp_path, "tsv", bytes(range(128, 256)) * 2)
    with pytest.raises(CorpusError, match=r":1: not valid utf-8 text \(nor CP949 \(EUC-KR family\)\): is it a text"):
        read_pairs(path)


def test_euc_kr_files_read_with_their_encoding(tmp_path):
    # EUC-KR is the subset of CP949 with the 2350 common syllables; either name reads it.
    text = "sentence1\tsentence2\tgold_label\n비가 많이 온다\t날씨가 \"맑다\"\tneutral\n"
    path = write(tmp_path, "tsv", text.encode("euc-kr"))
    for encoding in ("euc-kr", "cp949"):
        assert read_pairs(path, encoding=encoding) == [Pair("비가 많이 온다", '날씨가 "맑다"', "neutral")]
    with pytest.raises(CorpusError, match=rf"{re.escape(str(path))}:2: not valid utf-8 text; it looks like CP949"):
        read_pairs(path)


def test_unknown_encoding_format_and_extension(tmp_path):
    path = write(tmp_path, "tsv", "a\tb\n")
    with pytest.raises(CorpusError, match=r"unknown encoding 'klingon'"):
        read_pairs(path, encoding="klingon")
    with pytest.raises(CorpusError, match=r"unknown format 'xml'"):
        read_pairs(path, fmt="xml")
    with pytest.raises(CorpusError, match=r"cannot tell the format"):
        read_pairs(write(tmp_path, "xlsx", b"PK\x03\x04"))


# --- the command line --------------------------------------------------------------------------------------------


def test_train_on_a_malformed_file_exits_2_naming_file_and_line(tmp_path):
    from korpair.cli import app

    good = "sentence1\tsentence2\tgold_label\n" + "비가 온다\t날씨가 맑다\tneutral\n" * 4
    bad = good + "하나\t둘\t셋\t넷\n"  # a stray tab on line 6
    train, validation = write(tmp_path, "tsv", bad, "train"), write(tmp_path, "tsv", good, "dev")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "sample", "--train-file", str(train), "--validation-file",
                                      str(validation), "--set", f"trainer.output_dir={out}"])
    assert result.exit_code == 2, result.output
    assert f"{train}:6: expected 3 fields" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir()), "nothing written on a data error"


def test_train_on_a_file_with_markup_like_text_still_exits_2(tmp_path):
    from korpair.cli import app

    text = "[/b]\tsentence2\tgold_label\n비가 온다\t날씨가 맑다\tneutral\n"  # the error lists the columns
    train = write(tmp_path, "tsv", text, "train")
    result = CliRunner().invoke(app, ["train", "sample", "--train-file", str(train), "--validation-file", str(train),
                                      "--set", f"trainer.output_dir={tmp_path / 'run'}"])
    assert result.exit_code == 2, result.exception
    assert "'[/b]'" in result.output
