"""``evaluate`` and ``predict`` check their files, output paths and options before they load a model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from korpair.cli import app
from korpair.config import BUILTIN_TASKS
from korpair.inference import Predictor

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(Predictor, "from_pretrained", refuse)


@pytest.fixture
def files(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"premise": "비가 온다", "hypothesis": "날씨가 맑다", "label": "neutral"},
                                ensure_ascii=False) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"premise": "가", "hypothesis": "나"}, {"premise": "", "hypothesis": "나"},
        {"premise": "가", "hypothesis": "나"}, {"premise": "가", "hypothesis": 3}]), encoding="utf-8")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "folder.jsonl").mkdir()
    return tmp_path


PREDICT = [  # (arguments after MODEL_DIR, with {d} the folder of the files; what the error says)
    (["-i", "{d}/missing.jsonl", "-o", "{d}/out.jsonl"], "missing.jsonl: file not found"),
    (["-i", "{d}/folder.jsonl", "-o", "{d}/out.jsonl"], "folder.jsonl: not a file"),
    (["-i", "{d}/pairs.jsonl", "-o", "{d}/out.txt"], "out.txt: cannot tell the output format from the extension"),
    (["-i", "{d}/pairs.jsonl", "-o", "{d}/folder.jsonl"], "folder.jsonl: is a folder; name the file to write"),
    (["-i", "{d}/pairs.jsonl", "-o", "{d}/a-file/out.jsonl"], "a-file is a file, not a folder"),
    (["-i", "{d}/pairs.jsonl", "-o", "{d}/pairs.jsonl"], "pairs.jsonl: is the input file"),
    (["-i", "{d}/pairs.jsonl", "-o", "{d}/out.jsonl", "--batch-size", "0"],
     "--batch-size 0: expected a whole number of at least 1"),
    (["-i", "{d}/pairs.jsonl", "-o", "{d}/out.jsonl", "--encoding", "klingon"],
     "--encoding klingon: not a text encoding Python knows"),
    (["-i", "{d}/bad.jsonl", "-o", "{d}/out.jsonl"], "bad.jsonl: 2 bad row(s): bad.jsonl:2: empty first text "
                                                      "bad.jsonl:4: second text must be a string"),
]


@pytest.mark.parametrize(("args", "expected"), PREDICT)
def test_predict_checks_before_loading_the_model(tiny_model_dir, files, no_model_load, args, expected):
    before = sorted(p.name for p in files.iterdir())
    result = run("predict", tiny_model_dir, *[a.format(d=files) for a in args])
    assert result.exit_code == 2, result.output
    assert expected.replace("{d}", str(files)) in " ".join(result.output.replace(f"{files}/", "").split())
    assert sorted(p.name for p in files.iterdir()) == before, "nothing written"


EVALUATE = [
    (["--data", "{d}/missing.jsonl"], "missing.jsonl: file not found"),
    (["--data", "{d}/pairs.jsonl", "--encoding", "klingon"], "--encoding klingon: not a text encoding"),
    (["--data", "{d}/pairs.jsonl", "--batch-size", "0"], "--batch-size 0: expected a whole number of at least 1"),
    (["--data", "{d}/pairs.jsonl", "-o", "{d}/a-file"], "a-file: is a file, not a folder"),
    (["--corpus", "snli"], f"--corpus snli: not a built-in corpus; the built-in ones are {', '.join(BUILTIN_TASKS)} "
                           "(for a file of your own pass --data)"),
    (["--corpus", "sample", "--split", "dev"], "--split dev: expected 'validation', 'test' or 'train'"),
    ([], "the model folder records no training corpus"),
    (["--corpus", "korsts"], "the model predicts labels (classification), but corpus 'korsts' has similarity "
                             "scores; score it on a classification corpus"),
]


@pytest.mark.parametrize(("args", "expected"), EVALUATE)
def test_evaluate_checks_before_loading_the_model(tiny_model_dir, files, no_model_load, args, expected):
    result = run("evaluate", tiny_model_dir, *[a.format(d=files) for a in args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.replace(f"{files}/", "").split())
    assert not (tiny_model_dir.parent / "eval-pairs").exists()


def test_a_regression_model_on_a_label_corpus_is_refused_before_loading_or_fetching(tiny_regressor_dir, tmp_path,
                                                                                      no_model_load):
    result = run("evaluate", tiny_regressor_dir, "--corpus", "klue-nli", "--data-dir", tmp_path / "klue")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "the model predicts a score (regression), but corpus 'klue-nli' has labels; " \
        "score it on a regression corpus (korsts, klue-sts) or pass --data a file of its kind" in output, output
    assert not (tmp_path / "klue").exists(), "no download was tried"


def test_python_callers_get_the_same_checks_in_their_arguments(tiny_model_dir, files, no_model_load):
    from korpair import api
    from korpair.errors import ConfigError, CorpusError

    with pytest.raises(ConfigError, match=r"batch_size=0: expected a whole number"):
        api.predict_file(tiny_model_dir, files / "pairs.jsonl", files / "out.jsonl", batch_size=0)
    with pytest.raises(CorpusError, match="missing.jsonl: file not found"):
        api.evaluate(tiny_model_dir, files / "missing.jsonl")
    with pytest.raises(ConfigError, match=r"corpus='snli': not a built-in corpus.*pass data=\)"):
        api.evaluate(tiny_model_dir, corpus="snli")
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        api.predict(tiny_model_dir, [("가", "나")], precision="fp8")


def test_evaluate_reports_dropped_rows_in_the_console_and_metrics_json(tiny_model_dir, tmp_path):
    """KLUE marks pairs without a gold label '-': train counts them, and so does evaluate."""
    data = tmp_path / "dev.jsonl"
    labels = ["entailment", "-", "neutral", "-", "contradiction", "neutral", "-"]
    data.write_text("".join(json.dumps({"premise": f"비가 온다 {i}", "hypothesis": "날씨가 맑다", "label": label},
                                       ensure_ascii=False) + "\n" for i, label in enumerate(labels)),
                    encoding="utf-8")
    result = run("evaluate", tiny_model_dir, "--data", data, "-o", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "dropped 3 row(s): dev.jsonl: gold label '-'" in output and "dropped rows: 3" in output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 4 and metrics["dropped_rows"] == {"dev.jsonl: gold label '-'": 3}

    from korpair import api

    clean = api.evaluate(tiny_model_dir, tmp_path / "eval" / "predictions.jsonl", label_column="gold",
                         output_dir=tmp_path / "again")
    assert clean.metrics["dropped_rows"] == {} and clean.metrics["n"] == 4
