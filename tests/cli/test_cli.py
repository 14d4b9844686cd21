"""The command line: thin over the API, clear errors with exit status 2."""

from __future__ import annotations

import csv
import json
import re

import pytest
import typer
from conftest import SHARED_DATA
from typer.testing import CliRunner

from korpair.cli import app
from korpair.cli.options import command_flags, in_flags
from korpair.config import TrainConfig, load_config
from korpair.errors import ConfigError

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


COMMANDS = ("train", "evaluate", "predict", "serve", "export", "corpora", "config")


def help_of(command: str) -> str:
    # wide enough that the rich tables of the small commands show every option whole
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "240"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def flags_of(command: str):
    return command_flags(typer.main.get_command(app).commands[command])


def test_every_command_is_there_and_its_help_shows_its_options():
    result = run("--help")
    assert result.exit_code == 0
    commands = typer.main.get_command(app).commands
    for command in COMMANDS:
        assert command in commands and command in result.output, f"'korpair {command}' disappeared"
        text = help_of(command)
        for param in commands[command].params:
            for opt in [*param.opts, *param.secondary_opts]:
                assert not opt.startswith("-") or opt in text, (command, opt)


def test_train_help_has_an_option_for_every_config_key_grouped_by_section():
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "80"}).output
    for section, field in TrainConfig.model_fields.items():
        summary = field.annotation.__doc__.splitlines()[0].rstrip(".")
        assert f"{section} ({summary[0].lower()}{summary[1:]}):" in text, section
        for key, spec in field.annotation.model_fields.items():
            assert f"--{section}.{key}" in text, f"{section}.{key}"
            assert spec.description.split()[0] in text
    for alias in ("-o", "--output-dir", "--model", "--corpus", "--data-dir", "--train-file", "--validation-file",
                  "--epochs", "--max-steps", "--batch-size", "--lr", "--precision", "--accelerator", "--devices",
                  "--num-nodes", "--strategy", "--seed", "--trust-remote-code", "--set", "--overwrite", "--resume"):
        assert f"{alias} " in text or f"{alias}," in text, alias
    assert "…" not in text, "no option name is cut short on an 80-column terminal"


@pytest.mark.parametrize(("flags", "overrides"), [
    (["--model", "klue/bert-base"], ["model.name_or_path=klue/bert-base"]),
    (["--train-file", "t.tsv", "--validation-file", "d.tsv"], ["corpus.train_file=t.tsv", "corpus.validation_file=d.tsv"]),
    (["--optim.betas", "[0.9, 0.98]", "--no-data.group_by_length", "--trust-remote-code", "--model.revision", "null",
      "--epochs", "2", "--lr", "1e-4", "-o", "runs/x", "--set", "trainer.max_epochs=4"],
     ["optim.betas=[0.9, 0.98]", "data.group_by_length=false", "model.trust_remote_code=true", "model.revision=null",
      "trainer.max_epochs=2", "optim.lr=1e-4", "trainer.output_dir=runs/x", "trainer.max_epochs=4"]),
])
def test_the_shell_and_python_build_the_same_config(monkeypatch, flags, overrides):
    from korpair import api

    built = []

    def fake_train(config, overrides, **kwargs):  # what korpair.train does first
        built.append(load_config(config, overrides))
        raise ConfigError("stop here")

    monkeypatch.setattr(api, "train", fake_train)
    result = run("train", "sample", *flags)
    assert result.exit_code == 2 and "stop here" in result.output
    assert built == [load_config("sample", overrides)]
    shown = run("config", "sample", *flags)
    assert shown.exit_code == 0 and shown.output.strip() == load_config("sample", overrides).to_yaml().strip()


def test_a_contradiction_exits_2_in_flags():
    result = run("config", "sample", "--model", "x", "--model.from_scratch")
    assert result.exit_code == 2
    assert "--model.name_or_path x and --model.from_scratch contradict each other" in result.output
    result = run("config", "sample", "--train-file", "t.tsv")
    assert result.exit_code == 2 and "needs --corpus.validation_file" in result.output


def library_messages(tmp_path) -> dict[str, str]:
    """Real messages of the library, each from the call that raises it."""
    import socket

    from korpair.corpora import fetch_corpus, read_pairs
    from korpair.errors import KorpairError, TrainingInterrupted
    from korpair.serve.server import _listen
    from korpair.training.run import prepare_output_dir

    (tmp_path / "cp949.tsv").write_bytes("sentence1\tsentence2\tgold_label\n비가 온다\t맑다\tneutral\n".encode("cp949"))
    (tmp_path / "cols.tsv").write_text("s1\ts2\ty\n가\t나\tneutral\n", encoding="utf-8")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "old.txt").write_text("x")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    calls = {
        "encoding": lambda: read_pairs(tmp_path / "cp949.tsv"),
        "columns": lambda: read_pairs(tmp_path / "cols.tsv"),
        "download": lambda: fetch_corpus("klue-nli", tmp_path / "klue", download=False),
        "interrupted": lambda: (_ for _ in ()).throw(TrainingInterrupted(tmp_path / "run", 5)),
        "output": lambda: prepare_output_dir(tmp_path / "run", overwrite=False),
        "port": lambda: _listen("127.0.0.1", taken.getsockname()[1]),
        "contradiction": lambda: load_config("sample", ["model.name_or_path=x", "model.from_scratch=true"]),
        "files": lambda: load_config("sample", ["corpus.train_file=t.tsv"]),
    }
    messages = {}
    for name, call in calls.items():
        with pytest.raises(KorpairError) as err:
            call()
        messages[name] = str(err.value)
    taken.close()
    return messages


def test_library_messages_name_python_arguments_and_config_keys_not_flags(tmp_path):
    for name, message in library_messages(tmp_path).items():
        assert not re.search(r"(?<![\w/-])--[a-z]", message), (name, message)


def test_no_library_string_names_a_flag():
    """Flags belong to cli/; elsewhere only docstrings and the aliases declared beside config keys hold them."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "korpair"
    found = []
    for path in src.rglob("*.py"):
        if path.relative_to(src).parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call)
                   and getattr(node.func, "id", None) == "_cli" for arg in node.args}
        allowed |= {id(node.body[0].value) for node in ast.walk(tree)
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and ast.get_docstring(node) is not None}
        found += [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed
                  and re.search(r"(?<![\w/-])--[a-z]", node.value)]
    assert not found, found


# (command, message, what its flags read)
IN_FLAGS = [
    ("train", "encoding", "pass --corpus.encoding cp949"),
    ("train", "columns", "Name yours with --corpus.text_a_column / --corpus.text_b_column / --corpus.label_column."),
    ("train", "download", "or point --corpus.data_dir at the folder"),
    ("train", "interrupted", "continue it with --resume "),
    ("train", "output", "pass --overwrite to replace it, --resume "),
    ("train", "output", "or choose another --trainer.output_dir"),
    ("train", "contradiction", "--model.name_or_path x and --model.from_scratch contradict"),
    ("train", "files", "--corpus.name files (your own data, which a --corpus.train_file implies) needs "
                       "--corpus.validation_file"),
    ("evaluate", "encoding", "pass --encoding cp949"),
    ("evaluate", "columns", "Name yours with --text-a / --text-b / --label-column."),
    ("predict", "encoding", "pass --encoding cp949"),
    ("corpora", "download", "or point --data-dir at the folder"),
    ("serve", "port", "Pick another with --port (0 picks a free one)"),
    ("config", "contradiction", "--model.name_or_path x and --model.from_scratch contradict"),
]


def test_messages_read_in_the_flags_of_the_running_command_and_every_flag_exists(tmp_path):
    messages = library_messages(tmp_path)
    for command, name, expected in IN_FLAGS:
        assert expected in in_flags(messages[name], flags_of(command)), (command, name)
    for command in COMMANDS:
        text, flags = help_of(command), flags_of(command)
        for name, message in messages.items():
            for flag in re.findall(r"(?<![\w/-])--[\w.-]*\w", in_flags(message, flags)):
                assert flag in text, f"korpair {command} has no {flag} (from the {name} message)"


def test_the_servers_warning_reads_in_flags(capsys):
    import logging

    from korpair.cli.options import LogFlags
    from korpair.serve.server import _announce

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    in_serve = LogFlags()
    in_serve.flags = flags_of("serve")
    handler.addFilter(in_serve)
    logging.getLogger("korpair").addHandler(handler)
    try:
        _announce("model", "0.0.0.0", 8000, blocking=False)
    finally:
        logging.getLogger("korpair").removeHandler(handler)
    assert [r.getMessage() for r in records if "unless you mean it" in r.getMessage()] == [
        "listening on 0.0.0.0:8000: any machine that can reach this one may use the model, with no authentication. "
        "Use --host 127.0.0.1 unless you mean it."]


def test_train_and_evaluate_print_the_encoding_hint_in_their_flags(trained_run, tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes("sentence1\tsentence2\tgold_label\n비가 온다\t날씨가 맑다\tneutral\n".encode("cp949"))
    result = run("train", "--train-file", str(path), "--validation-file", str(path), "-o", str(tmp_path / "run"))
    assert result.exit_code == 2 and "pass --corpus.encoding cp949" in result.output, result.output
    result = run("evaluate", str(trained_run.model_dir), "--data", str(path))
    assert result.exit_code == 2 and "pass --encoding cp949" in result.output, result.output


def test_bad_config_key_exits_2_naming_the_key(tmp_path):
    result = run("train", "sample", "--set", "optim.lrr=1", "-o", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "optim.lrr: unknown key" in result.output
    assert not (tmp_path / "x").exists(), "nothing written on a config error"


def test_missing_training_file_exits_2(tmp_path):
    result = run("train", "sample", "--train-file", str(tmp_path / "none.jsonl"),
                 "--validation-file", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "none.jsonl: file not found" in result.output


def test_evaluate_writes_report(trained_run, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", str(trained_run.model_dir), "--corpus", "sample", "--split", "test", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "confusion matrix" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    lines = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == metrics["n"] > 0
    first = json.loads(lines[0])
    assert set(first) == {"premise", "hypothesis", "gold", "predicted", "scores"}
    assert abs(sum(first["scores"].values()) - 1) < 1e-4
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert set(metrics["per_class"]) == {"entailment", "neutral", "contradiction"}


def test_evaluate_defaults_to_the_corpus_the_model_records(trained_run, tmp_path):
    result = run("evaluate", str(trained_run.model_dir), "--split", "test", "-o", str(tmp_path / "eval"))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "eval" / "metrics.json").read_text())["data"]
    assert data.startswith("sample:test") and f"evaluated: {data}" in result.output


KLUE_DEV = SHARED_DATA / "klue-nli" / "klue-nli-v1.1_dev.json"


@pytest.mark.skipif(not KLUE_DEV.is_file(), reason="KLUE-NLI dev is not in ../shared/data")
def test_a_klue_trained_model_evaluates_klue_validation_by_default(tmp_path):
    """The built-in corpus a model was trained on, not the `sample` corpus, is what `evaluate MODEL` scores."""
    import shutil

    data_dir = tmp_path / "klue"  # the real dev file (its published sha256), and 300 of its pairs as "train"
    data_dir.mkdir()
    shutil.copy(KLUE_DEV, data_dir / KLUE_DEV.name)
    rows = json.loads(KLUE_DEV.read_text(encoding="utf-8"))
    (data_dir / "klue-nli-v1.1_train.json").write_text(json.dumps(rows[:300], ensure_ascii=False), encoding="utf-8")
    run_dir = tmp_path / "run"
    trained = run("train", "sample", "--corpus", "klue-nli", "--data-dir", str(data_dir), "-o", str(run_dir),
                  "--model.from_scratch", "--model.vocab_size", "500", "--model.hidden_size", "32",
                  "--model.num_layers", "1", "--model.num_heads", "2", "--model.intermediate_size", "64",
                  "--max-steps", "2", "--no-corpus.download", "--data.cache_dir", str(tmp_path / "cache"),
                  "--no-trainer.progress_bar")
    assert trained.exit_code == 0, trained.output
    result = run("evaluate", str(run_dir / "model"), "-o", str(tmp_path / "eval"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["data"].startswith("klue-nli:validation") and metrics["n"] == len(rows)
    assert "evaluated: klue-nli:validation" in result.output
    # KLUE publishes no test labels: asking for its test split is a clear error, not the sample corpus
    missing = run("evaluate", str(run_dir / "model"), "--split", "test")
    assert missing.exit_code == 2 and "test" in missing.output and "--data" in missing.output


def test_evaluate_unknown_gold_label(trained_run, write_jsonl):
    path = write_jsonl([{"premise": "가", "hypothesis": "나", "label": "maybe"}])
    result = run("evaluate", str(trained_run.model_dir), "--data", str(path))
    assert result.exit_code == 2 and "data.jsonl:1: unknown label 'maybe'" in result.output


def test_predict_one_pair(trained_run):
    result = run("predict", str(trained_run.model_dir), "--premise", "비가 온다", "--hypothesis", "날씨가 맑다")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["label"] in answer["scores"]


def test_predict_file_round_trip_keeps_order(trained_run, tmp_path, write_jsonl):
    rows = [{"premise": f"민수는 {i}번째 사과를 먹었다", "hypothesis": "민수는 과일을 먹었다"} for i in range(50)]
    src = write_jsonl(rows, "in.jsonl")
    for suffix in (".jsonl", ".csv"):
        dst = tmp_path / f"out{suffix}"
        result = run("predict", str(trained_run.model_dir), "-i", str(src), "-o", str(dst))
        assert result.exit_code == 0, result.output
        if suffix == ".jsonl":
            got = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
        else:
            with open(dst, newline="", encoding="utf-8") as fh:
                got = list(csv.DictReader(fh))
        assert [g["premise"] for g in got] == [r["premise"] for r in rows]


def test_predict_file_bad_row_leaves_no_output(trained_run, tmp_path, write_jsonl):
    src = write_jsonl([{"premise": "가", "hypothesis": "나"}, {"premise": "", "hypothesis": "나"}], "in.jsonl")
    dst = tmp_path / "out.jsonl"
    result = run("predict", str(trained_run.model_dir), "-i", str(src), "-o", str(dst))
    assert result.exit_code == 2 and "in.jsonl:2: empty first text" in result.output
    assert not dst.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_not_a_model_folder(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    result = run("predict", str(tmp_path), "--premise", "a", "--hypothesis", "b")
    assert result.exit_code == 2 and "did you mean" in result.output


def test_predict_file_in_bf16_agrees_with_fp32(learned_run, pair_task_files, tmp_path):
    """bf16 autocast is the fast inference path; on a model with real margins it gives the same labels."""
    outputs = {}
    for precision in ("32", "bf16"):
        out = tmp_path / f"{precision}.jsonl"
        result = run("predict", str(learned_run.model_dir), "--input", str(pair_task_files / "validation.jsonl"),
                     "--output", str(out), "--precision", precision)
        assert result.exit_code == 0, result.output
        outputs[precision] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    fp32, bf16 = outputs["32"], outputs["bf16"]
    assert len(fp32) == len(bf16) == 600
    agreement = sum(a["label"] == b["label"] for a, b in zip(fp32, bf16)) / len(fp32)
    assert agreement >= 0.98, agreement
    worst = max(abs(a["scores"][k] - b["scores"][k]) for a, b in zip(fp32, bf16) for k in a["scores"])
    assert 0 < worst < 0.05, "bf16 really ran, and stayed close to fp32"


def test_precision_is_checked(tiny_model_dir, tmp_path):
    from korpair import api
    from korpair.errors import ConfigError
    from korpair.inference import Predictor

    bad = run("predict", str(tiny_model_dir), "--premise", "가", "--hypothesis", "나", "--precision", "fp8")
    assert bad.exit_code == 2 and "fp8" in bad.output
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        api.predict(tiny_model_dir, [("가", "나")], precision="fp8")
    with pytest.raises(ConfigError, match="precision 'half'"):
        Predictor.from_pretrained(tiny_model_dir, precision="half")


def inference_messages(tmp_path, classifier, regressor) -> dict[str, str]:
    """Real messages of the checks evaluate and predict run before loading a model."""
    from korpair import api
    from korpair.errors import KorpairError

    pairs, tabbed = tmp_path / "pairs.jsonl", tmp_path / "tabbed.jsonl"
    pairs.write_text(json.dumps({"premise": "가", "hypothesis": "나", "label": "neutral"}) + "\n")
    tabbed.write_text(json.dumps({"premise": "가\t가", "hypothesis": "나"}) + "\n")
    calls = {
        "output format": lambda: api.predict_file(classifier, pairs, tmp_path / "out.txt"),
        "batch size": lambda: api.predict_file(classifier, pairs, tmp_path / "out.jsonl", batch_size=0),
        "encoding name": lambda: api.predict_file(classifier, pairs, tmp_path / "out.jsonl", encoding="klingon"),
        "tsv field": lambda: api.predict_file(classifier, tabbed, tmp_path / "out.tsv"),
        "unknown corpus": lambda: api.evaluate(classifier, corpus="snli"),
        "split": lambda: api.evaluate(classifier, corpus="sample", split="dev"),
        "no corpus": lambda: api.evaluate(classifier),
        "task": lambda: api.evaluate(regressor, corpus="klue-nli"),
        "report folder": lambda: api.evaluate(classifier, pairs, output_dir=pairs),
    }
    messages = {}
    for name, call in calls.items():
        with pytest.raises(KorpairError) as err:
            call()
        messages[name] = str(err.value)
    return messages


INFERENCE_IN_FLAGS = [
    ("predict", "batch size", "--batch-size 0: expected a whole number"),
    ("predict", "encoding name", "--encoding klingon: not a text encoding"),
    ("evaluate", "encoding name", "--encoding klingon: not a text encoding"),
    ("evaluate", "unknown corpus", "--corpus snli: not a built-in corpus"),
    ("evaluate", "unknown corpus", "(for a file of your own pass --data)"),
    ("evaluate", "split", "--split dev: expected"),
    ("evaluate", "no corpus", "pass --data (a labelled file) or --corpus (a built-in corpus name: sample, demo, klue-nli"),
    ("evaluate", "task", "or pass --data a file of its kind"),
]


def test_evaluate_and_predict_messages_read_in_their_flags_and_every_flag_exists(
        tmp_path, tiny_model_dir, tiny_regressor_dir):
    messages = inference_messages(tmp_path, tiny_model_dir, tiny_regressor_dir)
    for name, message in messages.items():
        assert not re.search(r"(?<![\w/-])--[a-z]", message), ("a library message names a flag", name, message)
    for command, name, expected in INFERENCE_IN_FLAGS:
        assert expected in in_flags(messages[name], flags_of(command)), (command, name)
    # evaluate can now be pointed at a built-in corpus's folder, as the download message asks
    assert "or point --data-dir at the folder" in in_flags(library_messages(tmp_path)["download"],
                                                            flags_of("evaluate"))
    own = {"predict": ("output format", "batch size", "encoding name", "tsv field"),
           "evaluate": ("batch size", "encoding name", "unknown corpus", "split", "no corpus", "task", "report folder")}
    for command, names in own.items():
        text, flags = help_of(command), flags_of(command)
        for name, message in messages.items():
            shown = in_flags(message, flags)
            for flag in re.findall(r"(?<![\w/-])--[\w.-]*\w", shown):
                assert flag in text, f"korpair {command} has no {flag} (from the {name} message)"
            leftover = re.findall(r"(?<![\w./'\"`-])[a-z_]+=", shown)
            assert name not in names or not leftover, f"korpair {command} shows Python arguments {leftover}: {shown}"
