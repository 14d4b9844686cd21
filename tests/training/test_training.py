"""The training loop: schedules really apply, the model really learns, outputs are complete."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import LEARN, task_overrides

from korpair import api
from korpair.errors import OutputExistsError
from korpair.inference import Predictor


def logged(out: Path, column_prefix: str) -> dict[int, float]:
    with open(out / "logs" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    col = next(c for c in rows[0] if c.startswith(column_prefix))
    return {int(r["step"]): float(r[col]) for r in rows if r.get(col)}


def test_linear_warmup_then_decay_really_applies(pair_task_files, tmp_path):
    out = tmp_path / "run"
    api.train(None, task_overrides(pair_task_files, out) + [
        "trainer.max_steps=30", "trainer.log_every_n_steps=1", "optim.lr=1e-3", "optim.warmup_steps=6",
        "optim.scheduler=linear"])
    lrs = logged(out, "lr-AdamW")
    assert len(lrs) >= 25
    for step, lr in lrs.items():
        expected = 1e-3 * (step / 6 if step < 6 else max(0.0, (30 - step) / (30 - 6)))
        assert lr == pytest.approx(expected, rel=1e-6, abs=1e-12), step


def test_recipe_exponential_decay_per_epoch(pair_task_files, tmp_path):
    out = tmp_path / "run"
    api.train(None, task_overrides(pair_task_files, out) + [
        "trainer.max_epochs=3", "trainer.log_every_n_steps=5", "optim.optimizer=adam", "optim.lr=1e-3",
        "optim.scheduler=exponential", "optim.gamma=0.5"])
    lrs = logged(out, "lr-Adam")
    steps_per_epoch = -(-2400 // 32)
    for step, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * 0.5 ** (step // steps_per_epoch), rel=1e-6), step
    assert len(set(lrs.values())) == 3, "the LR must change each epoch (ratsnlp's stayed constant)"


def test_tiny_model_learns_a_pair_function(learned_run):
    """Label = f(pair): same sentence / negated / unrelated. Proof that the loop learns."""
    assert learned_run.metrics["val_accuracy"] >= 0.90, learned_run.metrics
    assert learned_run.metrics["global_step"] <= 5 * 75


def test_tiny_model_learns_in_fp32_too(pair_task_files, tmp_path):
    """The default precision is bf16 where the CPU has it; plain fp32 must learn as well."""
    result = api.train(None, task_overrides(pair_task_files, tmp_path / "run") + LEARN + ["trainer.precision=32"])
    assert result.metrics["val_accuracy"] >= 0.90, result.metrics


def test_outputs_are_a_plain_hf_folder(trained_run):
    out, model_dir = trained_run.output_dir, trained_run.model_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (model_dir / name).is_file(), name
    assert not (model_dir / "korpair_train.yaml").exists(), "the model folder carries its facts in config.json"
    assert not list(model_dir.glob("*.bin")), "weights are safetensors only"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    for name in ("metrics.json", "korpair_train.yaml", "training_curves.png", "logs/metrics.csv"):
        assert (out / name).is_file(), name
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["validation_pairs"] > 0


def test_save_load_identical_and_transformers_pipeline_agrees(trained_run):
    from transformers import pipeline

    from korpair.config import CorpusConfig
    from korpair.corpora import read_split

    pairs = read_split(CorpusConfig(name="sample"), "test")[:40]
    a = Predictor.from_pretrained(trained_run.model_dir).predict(pairs)
    b = Predictor.from_pretrained(trained_run.model_dir).predict(pairs, batch_size=7)
    assert [p.label for p in a] == [p.label for p in b]
    for x, y in zip(a, b):
        for name in x.scores:
            assert x.scores[name] == pytest.approx(y.scores[name], abs=1e-5)

    # transformers knows nothing of korpair's temperature: it gives the raw probabilities
    raw = Predictor.from_pretrained(trained_run.model_dir, calibrated=False).predict(pairs)
    assert [p.label for p in raw] == [p.label for p in a], "calibration changes no label"
    pipe = pipeline("text-classification", model=str(trained_run.model_dir), device="cpu")
    outputs = pipe([{"text": p.premise, "text_pair": p.hypothesis} for p in pairs], top_k=None)
    for ours, theirs in zip(raw, outputs):
        best = max(theirs, key=lambda d: d["score"])
        assert best["label"] == ours.label
        assert best["score"] == pytest.approx(ours.scores[ours.label], abs=1e-4)


def test_best_checkpoint_weights_are_exported(trained_run):
    """The exported folder holds the best checkpoint, not the last epoch's weights."""
    from safetensors.torch import load_file

    best = torch.load(trained_run.output_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    exported = load_file(str(trained_run.model_dir / "model.safetensors"))
    for key, value in exported.items():
        assert torch.equal(best[f"model.{key}"], value), key


def test_output_folder_is_not_mixed(trained_run):
    with pytest.raises(OutputExistsError, match="not empty"):
        api.train("sample", [f"trainer.output_dir={trained_run.output_dir}"])


@pytest.mark.parametrize("caps, speedup, expected", [
    ({"avx512_bf16": True, "amx_bf16": False}, 2.2, "bf16-mixed"),
    ({"avx512_bf16": False, "amx_bf16": True}, 5.0, "bf16-mixed"),
    # the flag, but bf16 slower than fp32 (a 2-core Xeon: 0.6x)
    ({"avx512_bf16": True, "amx_bf16": False}, 0.6, "32-true"),
    ({"avx512_bf16": False, "amx_bf16": False, "avx2": True}, 2.0, "32-true"),
])
def test_auto_precision_follows_the_cpu_and_its_measured_bf16_speed(monkeypatch, caps, speedup, expected):
    from korpair import hardware
    from korpair.hardware import resolve_precision

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    monkeypatch.setattr(hardware, "cpu_bf16_speedup", lambda: speedup)
    precision, why = resolve_precision("auto", "cpu")
    assert precision == expected
    if caps.get("avx512_bf16") or caps.get("amx_bf16"):
        assert f"{speedup:.1f}x" in why  # the log line says what was measured
    # what the user asks for is kept, whatever the hardware
    assert resolve_precision("32", "cpu") == ("32-true", "as configured")
    assert resolve_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"
    assert resolve_precision("auto", "mps")[0] == "32-true"


@pytest.fixture
def timing_home(monkeypatch, tmp_path):
    """A fresh KORPAIR_HOME and no timing cached in this process; yields the folder the timing is kept in."""
    from korpair.hardware import cpu_bf16_speedup

    monkeypatch.setenv("KORPAIR_HOME", str(tmp_path / "home"))
    cpu_bf16_speedup.cache_clear()
    yield tmp_path / "home" / "hardware"
    cpu_bf16_speedup.cache_clear()


_PRINT_SPEEDUP = "from korpair.hardware import cpu_bf16_speedup; print(cpu_bf16_speedup())"


def test_the_bf16_speedup_is_timed_once_a_machine_and_read_by_every_later_process(timing_home):
    from korpair.hardware import cpu_bf16_speedup

    state = torch.get_rng_state()
    first = cpu_bf16_speedup()
    # the global random stream is left alone: a seeded or resumed run draws the same numbers with or without it
    assert torch.equal(torch.get_rng_state(), state)
    assert 0.05 < first < 50  # a ratio of two real timings (emulated bf16 is slow, AMX fast)
    [record] = timing_home.iterdir()  # one file, no temporary left beside it
    assert json.loads(record.read_text(encoding="utf-8"))["bf16_speedup"] == first
    # another process reads the file instead of timing again: a planted answer is what it returns
    record.write_text(json.dumps({**json.loads(record.read_text(encoding="utf-8")), "bf16_speedup": 7.25}),
                      encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", _PRINT_SPEEDUP], capture_output=True, text=True, check=True)
    assert float(out.stdout) == 7.25


def test_processes_that_time_bf16_at_once_all_return_the_first_answer_kept(timing_home):
    procs = [subprocess.Popen([sys.executable, "-c", _PRINT_SPEEDUP], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    answers = {float(p.communicate(timeout=300)[0]) for p in procs}
    [record] = timing_home.iterdir()
    assert answers == {json.loads(record.read_text(encoding="utf-8"))["bf16_speedup"]}


def test_a_damaged_bf16_timing_is_named_timed_again_and_replaced(timing_home, caplog):
    from korpair.hardware import cpu_bf16_speedup

    cpu_bf16_speedup()
    [record] = timing_home.iterdir()
    record.write_text('{"cpu": "', encoding="utf-8")  # cut short, as by a full disk
    cpu_bf16_speedup.cache_clear()
    with caplog.at_level(logging.WARNING):
        again = cpu_bf16_speedup()
    assert str(record) in caplog.text and "unreadable" in caplog.text
    assert json.loads(record.read_text(encoding="utf-8"))["bf16_speedup"] == again


def test_the_bf16_timing_still_answers_where_korpair_home_cannot_be_written(monkeypatch, tmp_path):
    from korpair.hardware import cpu_bf16_speedup

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("KORPAIR_HOME", str(blocker))
    cpu_bf16_speedup.cache_clear()
    try:
        assert 0.05 < cpu_bf16_speedup() < 50
    finally:
        cpu_bf16_speedup.cache_clear()
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_auto_padding_multiple_is_off_on_cpu_and_8_on_gpu():
    from types import SimpleNamespace

    from korpair.config import DataConfig
    from korpair.features import PairDataModule

    def module(device: str, multiple="auto"):
        data = PairDataModule(None, None, DataConfig(pad_to_multiple_of=multiple), pad_id=0)
        data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
        return data

    assert module("cpu")._pad_multiple() is None
    assert module("cuda")._pad_multiple() == 8
    assert module("cpu", 16)._pad_multiple() == 16


@pytest.mark.parametrize("victim", ["metrics.json", "korpair_train.yaml"])
def test_a_full_disk_while_writing_the_run_is_an_error_naming_the_folder(pair_task_files, tmp_path, monkeypatch,
                                                                         victim):
    import errno

    import korpair.training.run as run
    from korpair.errors import DiskFullError

    real = run.write_text

    def write_text(path, text):
        if Path(path).name == victim:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(run, "write_text", write_text)
    out = tmp_path / "run"
    with pytest.raises(DiskFullError, match="no space left on device") as err:
        api.train(None, [*task_overrides(pair_task_files, out), "trainer.max_steps=2"])
    assert str(out) in str(err.value)
    assert not (out / "metrics.json").exists(), "a run that could not finish does not look finished"
