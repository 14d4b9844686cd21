"""The built-in similarity and paraphrase corpora: KorSTS, KLUE-STS and PAWS-X Korean, their files and downloads."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from test_corpora import dead_url, klue_tarball, mirror, point_at  # noqa: F401 (mirror: the loopback fixture)

from korpair.config import BUILTIN_TASKS, CorpusConfig, load_config
from korpair.corpora import BUILTIN_CORPORA, fetch_corpus, load_splits
from korpair.corpora.builtin import EMBEDDED_CORPORA, sha256_file
from korpair.errors import CorpusError, DownloadError
from korpair.types import LabelMap, ScoreRange

KORSTS = SHARED_DATA / "korsts"
KORSTS_FILES = {"train": "sts-train.tsv", "validation": "sts-dev.tsv", "test": "sts-test.tsv"}


def test_each_corpus_declares_the_task_the_config_knows_it_by():
    # config.py (below the corpora layer) keeps its own table of built-in tasks: the two must agree
    assert {name: c.task for name, c in BUILTIN_CORPORA.items()} == {
        n: t for n, t in BUILTIN_TASKS.items() if n not in EMBEDDED_CORPORA}
    assert {n: BUILTIN_TASKS[n] for n in EMBEDDED_CORPORA} == {"sample": "classification", "demo": "classification"}
    assert BUILTIN_CORPORA["korsts"].score_range == BUILTIN_CORPORA["klue-sts"].score_range == (0.0, 5.0)
    assert BUILTIN_CORPORA["paws-x-ko"].labels == ("0", "1")
    corpus = BUILTIN_CORPORA["korsts"]
    with pytest.raises(ValueError, match="regression one a score range"):
        dataclasses.replace(corpus, score_range=None)
    with pytest.raises(ValueError, match="is not one of"):
        dataclasses.replace(corpus, task="similarity")


# --- KorSTS: the real files ----------------------------------------------------------------------------------------


def _korsts_rows(name: str) -> list[list[str]]:
    lines = (KORSTS / name).read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["genre", "filename", "year", "id", "score", "sentence1", "sentence2"]
    return [line.split("\t") for line in lines[1:]]


@pytest.mark.skipif(not KORSTS.is_dir(), reason=f"{KORSTS} absent (team data)")
def test_real_korsts_files_are_the_pinned_ones():
    for split, name in KORSTS_FILES.items():
        [remote] = BUILTIN_CORPORA["korsts"].splits[split]
        assert remote.filename == name and remote.sha256 == sha256_file(KORSTS / name)
    assert fetch_corpus("korsts", KORSTS, download=False) == {s: [KORSTS / n] for s, n in KORSTS_FILES.items()}


@pytest.mark.skipif(not KORSTS.is_dir(), reason=f"{KORSTS} absent (team data)")
def test_real_korsts_loads_through_builtin_corpus():
    splits = load_splits(CorpusConfig(name="korsts", data_dir=KORSTS, download=False))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (5749, 1500, 1379)
    assert splits.target == ScoreRange(0.0, 5.0) and splits.task == "regression"
    assert not splits.dropped
    for pairs in (splits.train, splits.validation, splits.test):
        assert all(isinstance(p.label, float) and 0.0 <= p.label <= 5.0 for p in pairs)
    assert {p.label for p in splits.train} >= {0.0, 5.0}, "the whole 0-5 range occurs"
    # Rows with quote characters: text and score exactly as in the file (no CSV quoting eats them).
    rows = _korsts_rows("sts-train.tsv")
    quoted = [r for r in rows if '"' in r[5] + r[6]]
    assert quoted, "KorSTS's training file has sentences with quote characters"
    loaded = {(p.premise, p.hypothesis): p.label for p in splits.train}
    for row in quoted:
        assert loaded[(row[5], row[6])] == float(row[4])
    assert [(p.premise, p.hypothesis, p.label) for p in splits.validation] == [
        (r[5], r[6], float(r[4])) for r in _korsts_rows("sts-dev.tsv")]


# --- KLUE-STS and PAWS-X: files in their official formats, written here ----------------------------------------------

KLUE_STS_ROWS = [
    ("민지는 아침마다 공원을 달린다.", "민지는 매일 아침 공원에서 뛴다.", 4.6, 4.571428571428571),
    ("이 식당은 국수가 맛있다.", "이 식당의 국수는 맛이 좋다.", 4.1, 4.142857142857143),
    ("버스가 십 분 늦게 도착했다.", "도서관은 월요일에 문을 닫는다.", 0.0, 0.0),
    ('그는 "괜찮다"고 말했다.', "그는 문제없다고 했다.", 3.0, 3.0),
    ("창문을 열어 두면 시원하다.", "창문을 닫으면 덥다.", 2.3, 2.285714285714286),
]


def klue_sts_json(rows, split: str) -> str:
    return json.dumps([
        {"guid": f"klue-sts-v1_{split}_{i:05d}", "source": "korpair-test", "sentence1": a, "sentence2": b,
         "labels": {"label": label, "real-label": real, "binary-label": int(label >= 3.0)},
         "annotations": {"agreement": "0:0:0:0:0:0", "annotators": [], "annotations": []}}
        for i, (a, b, label, real) in enumerate(rows)
    ], ensure_ascii=False, indent=4)


def test_klue_sts_format_loads_through_builtin_corpus(tmp_path):
    (tmp_path / "klue-sts-v1.1_train.json").write_text(klue_sts_json(KLUE_STS_ROWS[:3], "train"), encoding="utf-8")
    (tmp_path / "klue-sts-v1.1_dev.json").write_text(klue_sts_json(KLUE_STS_ROWS[3:], "dev"), encoding="utf-8")
    splits = load_splits(CorpusConfig(name="klue-sts", data_dir=tmp_path, download=False))
    assert splits.target == ScoreRange(0.0, 5.0) and splits.test is None
    assert [(p.premise, p.hypothesis, p.label) for p in splits.train + splits.validation] == [
        (a, b, label) for a, b, label, _ in KLUE_STS_ROWS], "labels.label, the rounded mean, not real-label"
    assert all(type(p.label) is float for p in splits.train + splits.validation)
    real = load_splits(CorpusConfig(name="klue-sts", data_dir=tmp_path, download=False,
                                    label_column="labels.real-label"))
    assert [p.label for p in real.train] == [r[3] for r in KLUE_STS_ROWS[:3]], "KLUE-baseline's target"
    # the declared range is checked: a score past 5 is an error naming the file
    (tmp_path / "klue-sts-v1.1_dev.json").write_text(
        klue_sts_json([("가", "나", 5.5, 5.5)], "dev"), encoding="utf-8")
    with pytest.raises(CorpusError, match=r"klue-sts-v1.1_dev.json.*outside the range 0 to 5"):
        load_splits(CorpusConfig(name="klue-sts", data_dir=tmp_path, download=False))


PAWS_HEADER = "id\tsentence1\tsentence2\tlabel"
PAWS_TRAIN = [
    "1\t그 다리는 1920년에 강 위에 지어졌다.\t1920년에 그 다리는 강 위에 세워졌다.\t1",
    "2\t철수는 영희보다 먼저 학교에 왔다.\t영희는 철수보다 먼저 학교에 왔다.\t0",
    "3\t\t\t0",  # a machine translation that failed: both texts empty, as in the official translated_train.tsv
    '4\t그 책의 제목은 "바다"이다.\t"바다"는 그 책의 제목이다.\t1',
    "5\t시장은 역 동쪽에 있다.\t역은 시장 동쪽에 있다.\t0",
]
PAWS_DEV = ["10\t회의는 서울에서 열렸다.\t서울에서 회의가 열렸다.\t1", "11\t개가 고양이를 쫓았다.\t고양이가 개를 쫓았다.\t0",
            "12\tNS\t비가 그쳤다.\t0"]  # a sentence that was not translated: PAWS-X's README drops these rows
PAWS_TEST = ["20\t그녀는 1990년에 태어났다.\t그녀의 출생 연도는 1990년이다.\t1"]


def write_paws(folder: Path) -> dict[str, bytes]:
    data = {name: "\n".join([PAWS_HEADER, *rows]).encode("utf-8") + b"\n" for name, rows in
            (("translated_train.tsv", PAWS_TRAIN), ("dev_2k.tsv", PAWS_DEV), ("test_2k.tsv", PAWS_TEST))}
    for name, text in data.items():
        (folder / name).write_bytes(text)
    return data


def test_paws_x_format_loads_through_builtin_corpus(tmp_path):
    write_paws(tmp_path)
    splits = load_splits(CorpusConfig(name="paws-x-ko", data_dir=tmp_path, download=False))
    assert splits.target == LabelMap(("0", "1")) and splits.task == "classification"
    assert [p.label for p in splits.train] == ["1", "0", "1", "0"]
    assert splits.dropped == {"translated_train.tsv: empty text": 1, "dev_2k.tsv: placeholder text 'NS'": 1}, \
        "the blank translation and the untranslated placeholder are dropped and counted"
    assert splits.train[2].premise == '그 책의 제목은 "바다"이다.'
    assert (len(splits.validation), len(splits.test)) == (2, 1)
    assert [p.label for p in splits.validation + splits.test] == ["1", "0", "1"]


# --- downloads from a mirror on this machine, and the offline instructions -------------------------------------------


def test_korsts_download_is_checked_against_the_pinned_digest(tmp_path, monkeypatch, mirror):  # noqa: F811
    (mirror.root / "sts-dev.tsv").write_text("genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n",
                                             encoding="utf-8")
    point_at(monkeypatch, "korsts", "validation", mirror.url + "sts-dev.tsv")
    with pytest.raises(DownloadError, match=r"checksum mismatch \(expected sha256 d835b65b"):
        fetch_corpus("korsts", tmp_path / "korsts", ["validation"], retries=1)
    assert not list((tmp_path / "korsts").iterdir()), "a refused file leaves nothing behind"


@pytest.mark.skipif(not KORSTS.is_dir(), reason=f"{KORSTS} absent (team data)")
def test_the_official_korsts_file_is_accepted_from_the_second_mirror(tmp_path, monkeypatch, mirror):  # noqa: F811
    (mirror.root / "sts-test.tsv").write_bytes((KORSTS / "sts-test.tsv").read_bytes())
    point_at(monkeypatch, "korsts", "test", dead_url(), mirror.url + "sts-test.tsv")
    files = fetch_corpus("korsts", tmp_path / "korsts", ["test"], retries=1)
    assert sha256_file(files["test"][0]) == BUILTIN_CORPORA["korsts"].splits["test"][0].sha256


def test_klue_sts_files_come_out_of_one_archive_download(tmp_path, monkeypatch, mirror):  # noqa: F811
    train, dev = (klue_sts_json(KLUE_STS_ROWS[:3], "train").encode(), klue_sts_json(KLUE_STS_ROWS[3:], "dev").encode())
    [train_remote] = BUILTIN_CORPORA["klue-sts"].splits["train"]
    [dev_remote] = BUILTIN_CORPORA["klue-sts"].splits["validation"]
    klue_tarball(mirror.root / "klue-sts-v1.1.tar.gz", {train_remote.member: train, dev_remote.member: dev,
                                                       "klue-sts-v1.1/README": b"x"})
    point_at(monkeypatch, "klue-sts", "train", mirror.url + "klue-sts-v1.1.tar.gz")
    point_at(monkeypatch, "klue-sts", "validation", mirror.url + "klue-sts-v1.1.tar.gz",
             sha256=hashlib.sha256(dev).hexdigest())
    files = fetch_corpus("klue-sts", tmp_path / "klue-sts")
    assert [f.read_bytes() for f in files["train"] + files["validation"]] == [train, dev]
    assert mirror.requests == ["/klue-sts-v1.1.tar.gz"], "the archive is fetched once for both files"
    assert sorted(p.name for p in (tmp_path / "klue-sts").iterdir()) == [
        "klue-sts-v1.1_dev.json", "klue-sts-v1.1_train.json"], "only the members, no archive or scratch left"
    splits = load_splits(CorpusConfig(name="klue-sts", data_dir=tmp_path / "klue-sts"))
    assert [p.label for p in splits.validation] == [3.0, 2.3]


def test_paws_x_ko_comes_out_of_the_six_language_archive(tmp_path, monkeypatch, mirror):  # noqa: F811
    data = write_paws(tmp_path)
    members = {f"x-final/ko/{name}": text for name, text in data.items()}
    members["x-final/ja/dev_2k.tsv"] = b"id\tsentence1\tsentence2\tlabel\n"
    klue_tarball(mirror.root / "x-final.tar.gz", members)
    for split in ("train", "validation", "test"):
        point_at(monkeypatch, "paws-x-ko", split, mirror.url + "x-final.tar.gz")
    files = fetch_corpus("paws-x-ko", tmp_path / "paws")
    assert {f.name: f.read_bytes() for fs in files.values() for f in fs} == data
    assert mirror.requests == ["/x-final.tar.gz"]
    # an archive without the Korean files: every file's error says so, nothing is left
    klue_tarball(mirror.root / "x-final.tar.gz", {"x-final/ja/dev_2k.tsv": b"x"})
    with pytest.raises(DownloadError) as err:
        fetch_corpus("paws-x-ko", tmp_path / "paws2")
    assert str(err.value).count("the archive has no x-final/ko/") == 3
    assert not list((tmp_path / "paws2").iterdir())


OFFICIAL = {
    "korsts": [f"{n}  <-  https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/KorSTS/{n}"
               for n in KORSTS_FILES.values()],
    "klue-sts": [f"{n}  <-  https://raw.githubusercontent.com/KLUE-benchmark/KLUE/main/klue_benchmark/klue-sts-v1.1/{n}"
                 for n in ("klue-sts-v1.1_train.json", "klue-sts-v1.1_dev.json")],
    "paws-x-ko": [f"{n}  <-  https://storage.googleapis.com/paws/pawsx/x-final.tar.gz  (extract x-final/ko/{n})"
                  for n in ("translated_train.tsv", "dev_2k.tsv", "test_2k.tsv")],
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_offline_instructions_name_the_official_files_and_sources(tmp_path, name):
    with pytest.raises(DownloadError) as err:
        fetch_corpus(name, tmp_path / name, download=False)
    message = str(err.value)
    assert f"{name}: files missing and download is off" in message and f"put them in {tmp_path / name}/" in message
    assert all("  " + line in message.splitlines() for line in OFFICIAL[name]), message
    # the archives the files also come from: KLUE's competition tarball, PAWS-X's release
    archives = {r.urls[0] for rs in BUILTIN_CORPORA[name].splits.values() for r in rs if r.member}
    assert archives == {
        "korsts": set(),
        "klue-sts": {"https://aistages-prod-server-public.s3.amazonaws.com/app/Competitions/000067/data/"
                     "klue-sts-v1.1.tar.gz"},
        "paws-x-ko": {"https://storage.googleapis.com/paws/pawsx/x-final.tar.gz"},
    }[name]
    assert not (tmp_path / name).exists()


def test_klue_nli_keeps_its_sources():
    [dev] = BUILTIN_CORPORA["klue-nli"].splits["validation"]
    assert dev.urls == (
        "https://aistages-prod-server-public.s3.amazonaws.com/app/Competitions/000068/data/klue-nli-v1.1.tar.gz",
        "https://raw.githubusercontent.com/KLUE-benchmark/KLUE/main/klue_benchmark/klue-nli-v1.1/klue-nli-v1.1_dev.json")
    assert dev.member == "klue-nli-v1.1/klue-nli-v1.1_dev.json"
    assert [r.urls[0] for r in BUILTIN_CORPORA["kornli"].splits["train"]] == [
        "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/KorNLI/multinli.train.ko.tsv",
        "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/KorNLI/snli_1.0_train.ko.tsv"]


# --- presets ---------------------------------------------------------------------------------------------------------


def test_presets_follow_their_recipes():
    klue = load_config("klue-roberta-klue-sts")
    assert (klue.corpus.name, klue.model.name_or_path, klue.corpus.known_task) == (
        "klue-sts", "klue/roberta-base", "regression")
    # KLUE-baseline run_all.sh, klue-sts: lr 5e-5, batch 32, 4 epochs, warmup 0.1, no weight decay, 128 tokens
    assert (klue.optim.lr, klue.data.batch_size, klue.trainer.max_epochs, klue.optim.warmup_ratio,
            klue.optim.weight_decay, klue.data.max_seq_length, klue.trainer.gradient_clip_val) == (
        5e-5, 32, 4, 0.1, 0.0, 128, 1.0)
    assert klue.monitor_for("regression") == "val_pearson" and klue.corpus.label_column == "labels.real-label"
    nli = load_config("kcbert-klue-nli")
    for preset, corpus, task, monitor, length in (("kcbert-korsts", "korsts", "regression", "val_spearman", 72),
                                                  ("kcbert-paws-x-ko", "paws-x-ko", "classification",
                                                   "val_accuracy", 128)):
        cfg = load_config(preset)
        assert (cfg.corpus.name, cfg.corpus.known_task, cfg.monitor_for(task)) == (corpus, task, monitor)
        assert cfg.data.max_seq_length == length
        # the rest is the kcbert NLI recipe
        assert cfg.model == nli.model and cfg.optim == nli.optim
        assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.trainer.precision, cfg.trainer.seed) == (
            nli.data.batch_size, nli.trainer.max_epochs, nli.trainer.precision, nli.trainer.seed)
        assert cfg.trainer.output_dir == Path("runs") / preset
