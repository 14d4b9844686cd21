"""Readers and built-in corpora: good files load, every kind of bad file fails with file:line."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from korpair.config import CorpusConfig
from korpair.corpora import BUILTIN_CORPORA, fetch_corpus, load_splits, read_pairs, read_split
from korpair.errors import CorpusError, DownloadError
from korpair.types import NLI_LABELS, LabelMap

ROWS = [
    {"premise": "비가 온다", "hypothesis": "날씨가 맑다", "label": "contradiction"},
    {"premise": "민수는 밥을 먹었다", "hypothesis": "민수는 식사를 했다", "label": "entailment"},
    {"premise": "지영은 책을 읽는다", "hypothesis": "지영은 소설을 좋아한다", "label": "neutral"},
]


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def tsv(rows, header=("sentence1", "sentence2", "gold_label")) -> str:
    lines = ["\t".join(header)] + ["\t".join((r["premise"], r["hypothesis"], r["label"])) for r in rows]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "tsv", "csv"])
def test_every_format_reads_the_same_pairs(tmp_path, fmt):
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS)
    elif fmt == "json":
        text = json.dumps(ROWS, ensure_ascii=False)
    elif fmt == "tsv":
        text = tsv(ROWS)
    else:
        text = "premise,hypothesis,label\n" + "".join(f'"{r["premise"]}","{r["hypothesis"]}",{r["label"]}\n' for r in ROWS)
    pairs = read_pairs(write(tmp_path, f"d.{fmt}", text))
    assert [(p.premise, p.hypothesis, p.label) for p in pairs] == [
        (r["premise"], r["hypothesis"], r["label"]) for r in ROWS
    ]


def test_custom_columns_and_bom_and_crlf(tmp_path):
    text = "\ufeffa,b,y\r\n" + "".join(f"{r['premise']},{r['hypothesis']},{r['label']}\r\n" for r in ROWS)
    pairs = read_pairs(write(tmp_path, "d.csv", text), text_a_column="a", text_b_column="b", label_column="y")
    assert pairs[0].premise == "비가 온다" and pairs[-1].label == "neutral"


def test_tsv_keeps_quote_characters(tmp_path):
    path = write(tmp_path, "d.tsv", 'sentence1\tsentence2\tgold_label\n그가 말했다, "엄마, 저 왔어요."\t그는 "안녕"이라 했다\tneutral\n')
    [pair] = read_pairs(path)
    assert pair.premise == '그가 말했다, "엄마, 저 왔어요."'
    assert pair.hypothesis == '그는 "안녕"이라 했다'


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match=r"nope\.jsonl: file not found"):
        read_pairs(tmp_path / "nope.jsonl")


def test_malformed_json_names_line(tmp_path):
    path = write(tmp_path, "d.json", '[\n  {"premise": "a", "hypothesis": "b", "label": "x"},\n  {"premise": \n')
    with pytest.raises(CorpusError, match=r"d\.json:\d+: invalid JSON"):
        read_pairs(path)


def test_malformed_jsonl_names_line(tmp_path):
    good = json.dumps(ROWS[0], ensure_ascii=False)
    path = write(tmp_path, "d.jsonl", f"{good}\n{good}\n{{broken\n")
    with pytest.raises(CorpusError, match=r"d\.jsonl:3: invalid JSON"):
        read_pairs(path)


def test_tsv_wrong_field_count_names_line(tmp_path):
    path = write(tmp_path, "d.tsv", tsv(ROWS) + "하나\t둘\n")
    with pytest.raises(CorpusError, match=r"d\.tsv:5: expected 3 fields .* found 2"):
        read_pairs(path)


def test_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, "d.tsv", tsv(ROWS, header=("s1", "s2", "gold_label")))
    with pytest.raises(CorpusError, match=r"missing a first text column.*columns are \['s1', 's2', 'gold_label'\]"):
        read_pairs(path)


def test_empty_text_and_unknown_label_all_reported(tmp_path, write_jsonl):
    rows = ROWS + [
        {"premise": "  ", "hypothesis": "x", "label": "neutral"},
        {"premise": "a", "hypothesis": "b", "label": "maybe"},
    ]
    path = write_jsonl(rows)
    with pytest.raises(CorpusError) as err:
        read_pairs(path, labels=NLI_LABELS)
    message = str(err.value)
    assert "2 bad row(s)" in message
    assert "data.jsonl:4: empty first text" in message
    assert "data.jsonl:5: unknown label 'maybe'" in message


def test_wrong_type_field(tmp_path, write_jsonl):
    path = write_jsonl([{"premise": 3, "hypothesis": "b", "label": "neutral"}])
    with pytest.raises(CorpusError, match=r":1: first text must be a string"):
        read_pairs(path)


def test_wrong_encoding_is_named_with_a_hint(tmp_path):
    path = write(tmp_path, "d.tsv", tsv(ROWS), encoding="cp949")
    with pytest.raises(CorpusError, match=r"d\.tsv:2: not valid utf-8 text; it looks like CP949"):
        read_pairs(path)
    assert read_pairs(path, encoding="cp949")[0].premise == "비가 온다"


def test_dropped_rows_are_counted(tmp_path, write_jsonl):
    path = write_jsonl(ROWS + [{"premise": "a", "hypothesis": "b", "label": "-"}] * 2)
    dropped: Counter = Counter()
    pairs = read_pairs(path, dropped=dropped)
    assert len(pairs) == 3
    assert sum(dropped.values()) == 2


def test_empty_file(tmp_path):
    with pytest.raises(CorpusError, match="no rows"):
        read_pairs(write(tmp_path, "d.jsonl", "\n\n"))
    with pytest.raises(CorpusError, match="empty file"):
        read_pairs(write(tmp_path, "d.tsv", ""))


def test_label_map():
    labels = LabelMap(NLI_LABELS)
    assert labels.id("neutral") == 1 and labels.id2label[2] == "contradiction"
    with pytest.raises(CorpusError):
        LabelMap(("a", "a"))


def test_sample_corpus_loads():
    splits = load_splits(CorpusConfig(name="sample"))
    assert splits.target.names == NLI_LABELS
    assert len(splits.train) >= 300 and len(splits.validation) >= 50 and splits.test
    assert {p.label for p in splits.train} == set(NLI_LABELS)


def test_files_corpus_labels_from_data(tmp_path, write_jsonl):
    train = write_jsonl(ROWS * 2, "train.jsonl")
    val = write_jsonl(ROWS, "val.jsonl")
    splits = load_splits(CorpusConfig(name="files", train_file=train, validation_file=val))
    assert splits.target.names == ("contradiction", "entailment", "neutral")
    bad_val = write_jsonl([{**ROWS[0], "label": "other"}], "bad.jsonl")
    with pytest.raises(CorpusError, match="never occur in the training data"):
        load_splits(CorpusConfig(name="files", train_file=train, validation_file=bad_val))


# --- downloads (pooch) from mirrors on this machine ------------------------------------------------------------


class _Mirror(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving the folder it returns; ``folder.requests`` lists the paths asked for."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_Mirror,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # pooch waits between retries
    yield Mirror(root, f"http://127.0.0.1:{server.server_address[1]}/", handler.requests)
    server.shutdown()
    server.server_close()


@dataclasses.dataclass
class Mirror:
    root: Path
    url: str
    requests: list[str]


def dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on: connection refused, as offline
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/gone.tsv"


def point_at(monkeypatch, name: str, split: str, *urls: str, **changes):
    """Make a built-in corpus's file come from ``urls`` (and e.g. another ``sha256``) for this test."""
    corpus = BUILTIN_CORPORA[name]
    [remote] = corpus.splits[split]
    remote = dataclasses.replace(remote, urls=urls, **changes)
    monkeypatch.setitem(BUILTIN_CORPORA, name, dataclasses.replace(corpus, splits={**corpus.splits, split: (remote,)}))
    return remote


def test_offline_download_error_says_what_to_fetch(tmp_path, monkeypatch, mirror):
    point_at(monkeypatch, "kornli", "validation", dead_url(), dead_url())
    data_dir = tmp_path / "kornli"
    with pytest.raises(DownloadError) as err:
        fetch_corpus("kornli", data_dir, ["validation"], retries=2)
    message = str(err.value)
    assert "could not download xnli.dev.ko.tsv" in message and message.count("gone.tsv: ") == 2, "both mirrors"
    assert f"put them in {data_dir}/" in message and "xnli.dev.ko.tsv  <-  http://127.0.0.1" in message
    assert "data_dir= (config: corpus.data_dir=)" in message
    assert not list(data_dir.iterdir()), "no partial file may be left behind"
    # offline, the first file's failure stands for all: the others are listed, not waited for
    corpus = BUILTIN_CORPORA["kornli"]
    dead = tuple(dataclasses.replace(r, urls=(dead_url(),)) for r in corpus.splits["train"])
    monkeypatch.setitem(BUILTIN_CORPORA, "kornli", dataclasses.replace(corpus, splits={**corpus.splits, "train": dead}))
    with pytest.raises(DownloadError) as err:
        fetch_corpus("kornli", data_dir, ["train"], retries=1)
    assert str(err.value).count("could not download") == 1
    assert all(f"{r.filename}  <-  " in str(err.value) for r in dead) and len(dead) == 2
    with pytest.raises(DownloadError, match="download is off"):
        fetch_corpus("klue-nli", tmp_path / "klue", ["validation"], download=False)


def test_download_verifies_checksum_and_leaves_no_file(tmp_path, monkeypatch, mirror):
    (mirror.root / "xnli.dev.ko.tsv").write_bytes(b"tampered")
    point_at(monkeypatch, "kornli", "validation", mirror.url + "xnli.dev.ko.tsv")
    with pytest.raises(DownloadError, match=r"checksum mismatch \(expected sha256 821fb1c1"):
        fetch_corpus("kornli", tmp_path / "kornli", ["validation"], retries=2)
    assert mirror.requests == ["/xnli.dev.ko.tsv"] * 2, "a mismatch is retried (a cut transfer looks the same)"
    assert not list((tmp_path / "kornli").iterdir())


def test_the_next_mirror_is_used_when_one_fails(tmp_path, monkeypatch, mirror, capfd):
    text = tsv(ROWS).encode("utf-8")
    (mirror.root / "b").mkdir()
    (mirror.root / "b" / "xnli.dev.ko.tsv").write_bytes(text)
    point_at(monkeypatch, "kornli", "validation", mirror.url + "a/xnli.dev.ko.tsv", mirror.url + "b/xnli.dev.ko.tsv",
             sha256=hashlib.sha256(text).hexdigest())
    files = fetch_corpus("kornli", tmp_path / "kornli", ["validation"], retries=2)
    assert files == {"validation": [tmp_path / "kornli" / "xnli.dev.ko.tsv"]}
    assert files["validation"][0].read_bytes() == text
    mask = os.umask(0o022)
    os.umask(mask)
    assert files["validation"][0].stat().st_mode & 0o777 == 0o666 & ~mask, "the file follows the umask"
    assert mirror.requests == ["/a/xnli.dev.ko.tsv"] * 2 + ["/b/xnli.dev.ko.tsv"], "each mirror in order, retried"
    assert sorted(p.name for p in (tmp_path / "kornli").iterdir()) == ["xnli.dev.ko.tsv"], "no temporary left"
    assert "Downloading" not in capfd.readouterr().err, "pooch's own log stays quiet"
    assert fetch_corpus("kornli", tmp_path / "kornli", ["validation"]) == files and len(mirror.requests) == 3


def klue_tarball(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_archive_member_is_extracted_and_checked(tmp_path, monkeypatch, mirror):
    dev = json.dumps([{"premise": "가", "hypothesis": "나", "gold_label": "neutral"}]).encode()
    klue_tarball(mirror.root / "klue.tar.gz", {"./klue-nli-v1.1/klue-nli-v1.1_dev.json": dev,
                                               "./klue-nli-v1.1/klue-nli-v1.1_train.json": b"[]"})
    point_at(monkeypatch, "klue-nli", "validation", mirror.url + "klue.tar.gz", sha256=hashlib.sha256(dev).hexdigest())
    files = fetch_corpus("klue-nli", tmp_path / "klue", ["validation"])
    assert files["validation"][0].read_bytes() == dev
    assert [p.name for p in (tmp_path / "klue").iterdir()] == ["klue-nli-v1.1_dev.json"], "only the member"
    # an archive without the member, then one whose member fails its checksum: both are errors, no file
    klue_tarball(mirror.root / "other.tar.gz", {"README": b"x"})
    klue_tarball(mirror.root / "bad.tar.gz", {"klue-nli-v1.1/klue-nli-v1.1_dev.json": b"[1]"})
    point_at(monkeypatch, "klue-nli", "validation", mirror.url + "other.tar.gz", mirror.url + "bad.tar.gz",
             sha256=hashlib.sha256(dev).hexdigest())
    with pytest.raises(DownloadError) as err:
        fetch_corpus("klue-nli", tmp_path / "klue2", ["validation"])
    assert "has no klue-nli-v1.1/klue-nli-v1.1_dev.json" in str(err.value)
    assert "checksum mismatch" in str(err.value)
    assert not list((tmp_path / "klue2").iterdir())


KLUE_DEV = SHARED_DATA / "klue-nli" / "klue-nli-v1.1_dev.json"
XNLI_DEV = SHARED_DATA / "kornli" / "xnli.dev.ko.tsv"


@pytest.mark.skipif(not KLUE_DEV.exists(), reason=f"{KLUE_DEV} absent (team data)")
def test_real_klue_nli_dev_loads_through_builtin_corpus(tmp_path):
    cfg = CorpusConfig(name="klue-nli", data_dir=KLUE_DEV.parent, download=False)
    pairs = read_split(cfg, "validation")
    assert len(pairs) == 3000
    assert Counter(p.label for p in pairs) == {label: 1000 for label in NLI_LABELS}


@pytest.mark.skipif(not XNLI_DEV.exists(), reason=f"{XNLI_DEV} absent (team data)")
def test_real_kornli_xnli_dev_loads_through_builtin_corpus():
    cfg = CorpusConfig(name="kornli", data_dir=XNLI_DEV.parent, download=False)
    pairs = read_split(cfg, "validation")
    assert len(pairs) == 2490
    assert set(p.label for p in pairs) == set(NLI_LABELS)
    assert any('"' in p.premise for p in pairs), "quote characters inside TSV fields must survive"


@pytest.mark.skipif(not KLUE_DEV.exists(), reason=f"{KLUE_DEV} absent (team data)")
def test_real_klue_nli_dev_from_an_archive_matches_the_published_digest(tmp_path, monkeypatch, mirror):
    klue_tarball(mirror.root / "klue-nli-v1.1.tar.gz", {"klue-nli-v1.1/klue-nli-v1.1_dev.json": KLUE_DEV.read_bytes()})
    point_at(monkeypatch, "klue-nli", "validation", dead_url(), mirror.url + "klue-nli-v1.1.tar.gz")
    cfg = CorpusConfig(name="klue-nli", data_dir=tmp_path / "klue")
    assert len(read_split(cfg, "validation")) == 3000

