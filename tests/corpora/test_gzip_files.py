"""A corpus file compressed with gzip (``train.jsonl.gz``, ``dev.tsv.gz``) reads as the plain file does, with
the same file:line errors; a broken one is a clear error, not a crash."""

from __future__ import annotations

import gzip
import json

import pytest

from korpair.corpora import read_pairs
from korpair.errors import CorpusError

ROWS = [("비가 온다.", "날씨가 맑다.", "contradiction"), ("민수가 \"안녕\"이라고 했다.", "민수가 말했다.", "entailment")]


def write(path, text: str, compress: bool) -> None:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("name", ["pairs.tsv", "pairs.jsonl"])
def test_a_gzipped_file_reads_as_the_plain_one(tmp_path, name):
    if name.endswith(".tsv"):
        text = "premise\thypothesis\tlabel\n" + "".join("\t".join(r) + "\n" for r in ROWS)
    else:
        text = "".join(json.dumps({"premise": a, "hypothesis": b, "label": c}, ensure_ascii=False) + "\n"
                       for a, b, c in ROWS)
    write(tmp_path / name, text, compress=False)
    write(tmp_path / (name + ".gz"), text, compress=True)
    plain, packed = read_pairs(tmp_path / name), read_pairs(tmp_path / (name + ".gz"))
    assert packed == plain
    assert [(p.premise, p.hypothesis, p.label) for p in packed] == list(ROWS)


def test_a_bad_row_in_a_gzipped_file_names_its_line(tmp_path):
    text = "premise\thypothesis\tlabel\n비가 온다.\t날씨가 맑다.\tcontradiction\n비가 온다.\t\tneutral\n"
    write(tmp_path / "dev.tsv.gz", text, compress=True)
    with pytest.raises(CorpusError, match=r"dev\.tsv\.gz:3"):
        read_pairs(tmp_path / "dev.tsv.gz")


@pytest.mark.parametrize("data, why", [(b"not gzip at all", "cannot read"), (None, "cut short")])
def test_a_broken_gzip_file_is_an_error_naming_it(tmp_path, data, why):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(data if data is not None else gzip.compress(b'{"premise": "a", "hypothesis": "b"}\n' * 500)[:60])
    with pytest.raises(CorpusError, match=rf"train\.jsonl\.gz.*{why}"):
        read_pairs(path)
