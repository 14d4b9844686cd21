"""What ``korpair predict`` writes, korpair reads back unchanged: texts verbatim, TSV unquoted, ``-o -`` on stdout."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from korpair.cli import app
from korpair.corpora.readers import iter_records
from korpair.inference import Predictor

runner = CliRunner()

# Quote characters where CSV would quote (a TSV reader must not unquote them), spaces at either end,
# backslashes, a lone quote, a line separator that is not a line break for the readers.
TEXTS = [
    ('그는 "네"라고 말했다', "  앞에 공백이 두 칸 있다"),
    ('"따옴표로 시작한다', "뒤에 공백이 있다  "),
    ("쉼표, 그리고 \\t 는 역슬래시와 t", "'홑따옴표'와 \"\" 빈 따옴표"),
    ("줄 구분자\u2028가 있다", '"'),
    (" 양쪽에 공백 ", '한쪽만 "열린 인용'),
]


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_pairs(path, pairs) -> None:
    path.write_text("".join(json.dumps({"premise": a, "hypothesis": b}, ensure_ascii=False) + "\n"
                            for a, b in pairs), encoding="utf-8")


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(Predictor, "from_pretrained", refuse)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".json"])
@pytest.mark.parametrize("model", ["classifier", "regressor"])
def test_predictions_read_back_give_the_same_texts_and_predictions(request, tmp_path, model, suffix):
    model_dir = request.getfixturevalue("tiny_model_dir" if model == "classifier" else "tiny_regressor_dir")
    source = tmp_path / "in.jsonl"
    write_pairs(source, TEXTS)
    first, second = tmp_path / f"first{suffix}", tmp_path / f"second{suffix}"
    result = run("predict", model_dir, "-i", source, "-o", first)
    assert result.exit_code == 0, result.output
    records = [record for _, record in iter_records(first)]  # korpair's own reader of that format
    assert [(r["premise"], r["hypothesis"]) for r in records] == TEXTS, "texts verbatim, quotes and spaces kept"
    if model == "regressor":
        assert set(records[0]) == {"premise", "hypothesis", "score"}
        assert all(isinstance(float(r["score"]), float) for r in records)
    else:
        columns = {"label", "p_entailment", "p_neutral", "p_contradiction"} if suffix in (".csv", ".tsv") \
            else {"label", "scores"}
        assert set(records[0]) == {"premise", "hypothesis", *columns}
    result = run("predict", model_dir, "-i", first, "-o", second)  # the output, read back as input
    assert result.exit_code == 0, result.output
    assert second.read_bytes() == first.read_bytes(), "the same pairs and the same predictions"


@pytest.mark.parametrize(("text", "word"), [("탭\t문자", "a tab"), ("줄\n바꿈", "a line break"),
                                            ("캐리지\r리턴", "a carriage return")])
def test_a_text_that_a_tsv_field_cannot_hold_is_an_error_naming_its_row(
        tiny_model_dir, tmp_path, monkeypatch, no_model_load, text, word):
    source = tmp_path / "in.jsonl"
    write_pairs(source, [*TEXTS[:2], ("멀쩡한 문장", text), *TEXTS[2:]])
    out = tmp_path / "out.tsv"
    result = run("predict", tiny_model_dir, "-i", source, "-o", out)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{source}:3: the second text holds {word}" in output and ".jsonl, .json or .csv" in output
    assert list(tmp_path.iterdir()) == [source], "nothing written, nothing left behind"
    monkeypatch.undo()
    for suffix in (".csv", ".jsonl"):  # as the message says: these hold any text
        result = run("predict", tiny_model_dir, "-i", source, "-o", tmp_path / f"out{suffix}")
        assert result.exit_code == 0, result.output
        assert [r["hypothesis"] for _, r in iter_records(tmp_path / f"out{suffix}")][2] == text


def test_dash_streams_jsonl_to_stdout_and_the_count_to_stderr(tiny_model_dir, tmp_path):
    pairs = [(f"민수는 {i}번째 사과를 먹었다", " 민수는 과일을 먹었다") for i in range(300)]
    source = tmp_path / "in.tsv"
    source.write_text("premise\thypothesis\n" + "".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    result = run("predict", tiny_model_dir, "-i", source, "-o", "-")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # nothing but JSONL on stdout
    assert [(r["premise"], r["hypothesis"]) for r in rows] == pairs
    assert "300 predictions written to stdout" in result.stderr
    assert "300/300" in result.stderr, "the progress count ends on the number of pairs"


def test_the_progress_count_ends_on_the_number_of_pairs_written(tiny_model_dir, tmp_path, capsys):
    from korpair import api

    source = tmp_path / "in.jsonl"
    write_pairs(source, [(f"문장 {i}", "다른 문장") for i in range(261)])
    assert api.predict_file(tiny_model_dir, source, tmp_path / "out.jsonl", progress=True, batch_size=7) == 261
    captured = capsys.readouterr()
    assert "261/261" in captured.err and captured.out == ""


@pytest.mark.parametrize(("output", "expected"), [
    ("out.txt", "out.txt: cannot tell the output format from the extension '.txt'; name the file .jsonl, .json, "
                ".csv or .tsv (or - for JSONL on stdout)"),
    ("out", "out: cannot tell the output format from a name without an extension"),
])
def test_an_unknown_output_extension_is_an_error_before_the_model_loads(tiny_model_dir, tmp_path, no_model_load,
                                                                         output, expected):
    from korpair import api
    from korpair.errors import ConfigError

    source = tmp_path / "in.jsonl"
    write_pairs(source, TEXTS)
    result = run("predict", tiny_model_dir, "-i", source, "-o", tmp_path / output)
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
    with pytest.raises(ConfigError, match="cannot tell the output format"):
        api.predict_file(tiny_model_dir, source, tmp_path / output)
    assert list(tmp_path.iterdir()) == [source]


def test_a_regression_model_predicts_a_score_for_one_pair(tiny_regressor_dir):
    result = run("predict", tiny_regressor_dir, "--premise", " 비가 온다", "--hypothesis", "비가 내린다")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) == {"premise", "hypothesis", "score"} and answer["premise"] == " 비가 온다"
    assert isinstance(answer["score"], float)
