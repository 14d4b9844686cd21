"""Interrupted training resumes exactly; outputs are never half-written; checkpoints load no code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import write_pair_task_files

from korpair import api
from korpair.errors import (
    ConfigError,
    ModelFolderError,
    OutputExistsError,
    TrainingInterrupted,
)

TINY = ["model.from_scratch=true", "model.vocab_size=2000", "model.hidden_size=64", "model.num_layers=2",
        "model.num_heads=2", "model.intermediate_size=128", "model.dropout=0.1", "trainer.progress_bar=false",
        "trainer.max_epochs=3", "trainer.log_every_n_steps=4", "optim.lr=5e-4"]
# Long enough that a SIGTERM sent once logging has started lands mid-training, not after the
# last batch (3 epochs of this tiny model take about a second in bf16).
EPOCHS_WHEN_KILLED = 10


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[str]:
    return [*write_pair_task_files(tmp_path_factory.mktemp("resume-data"), 1200, 960, seed=5), *TINY]


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(data, tmp_path):
    data = [*data, f"trainer.max_epochs={EPOCHS_WHEN_KILLED}"]
    baseline = api.train(None, [*data, f"trainer.output_dir={tmp_path / 'a'}"])

    run = tmp_path / "b"
    cmd = [sys.executable, "-m", "korpair", "train", "--set", f"trainer.output_dir={run}"]
    for item in data:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not (run / "logs" / "metrics.csv").exists():  # written from the 4th step on
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert f"--resume {run}" in output, "the library's resume= written as the CLI flag"
    ckpt = run / "checkpoints" / "interrupted.ckpt"
    state = torch.load(ckpt, weights_only=True)
    steps_per_epoch = 960 // 32
    stopped_at = state["global_step"]
    assert 0 < stopped_at < EPOCHS_WHEN_KILLED * steps_per_epoch
    # the position inside the epoch is the data module's declared checkpoint state
    position = state["PairDataModule"]
    assert position["epoch"] * steps_per_epoch + position["train_batches_done"] == stopped_at
    assert not (run / "model").exists(), "no model folder from an unfinished run"

    resumed = api.train(resume=run)
    assert resumed.metrics["global_step"] == baseline.metrics["global_step"]
    for key in ("val_loss", "val_accuracy", "val_macro_f1"):
        assert round(resumed.metrics[key], 4) == round(baseline.metrics[key], 4), key
    assert not ckpt.exists(), "the interruption checkpoint is cleared once the run completes"
    assert (run / "training_curves.png").exists() and (run / "logs" / "metrics-part1.csv").exists()


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a korpair run folder"):
        api.train(resume=tmp_path)


def test_resume_auto_starts_fresh_without_checkpoint(data, tmp_path):
    out = tmp_path / "c"
    result = api.train(None, [*data, f"trainer.output_dir={out}", "trainer.max_epochs=1"], resume="auto")
    assert result.model_dir.is_dir()
    # the same folder again: resume=auto finds the run finished and returns it as it is
    again = api.train(None, [*data, f"trainer.output_dir={out}", "trainer.max_epochs=1"], resume="auto")
    assert again.metrics == result.metrics


def test_crash_during_save_keeps_previous_model(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from korpair.training.export import export_model

    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def crash(self, folder, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        export_model(model, tokenizer, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no temporary folder left behind"


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/korpair-pwned",))


def test_resume_refuses_checkpoint_with_code(data, tmp_path):
    run = tmp_path / "d"
    api.train(None, [*data, f"trainer.output_dir={run}", "trainer.max_epochs=1"])
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["evil"] = _Boom()
    torch.save(state, ckpt)
    Path("/tmp/korpair-pwned").unlink(missing_ok=True)
    with pytest.raises(ModelFolderError, match="refused.*weights_only"):
        api.train(resume=run, overrides=["trainer.max_epochs=2"])
    assert not Path("/tmp/korpair-pwned").exists()


def test_overwrite_keeps_old_model_until_new_one_is_ready(data, tmp_path):
    out = tmp_path / "e"
    api.train(None, [*data, f"trainer.output_dir={out}", "trainer.max_epochs=1"])
    weights = (out / "model" / "model.safetensors").read_bytes()
    with pytest.raises(OutputExistsError):
        api.train(None, [*data, f"trainer.output_dir={out}"])

    class Crash(L.Callback):
        def on_train_batch_end(self, *args, **kwargs) -> None:
            raise RuntimeError("crashed mid-training")

    with pytest.raises(RuntimeError, match="crashed mid-training"):
        api.train(None, [*data, f"trainer.output_dir={out}"], overwrite=True, callbacks=[Crash()])
    assert (out / "model" / "model.safetensors").read_bytes() == weights


class _SignalDuring(L.Callback):
    """Sends this process SIGTERM from inside a validation pass (sanity check or epoch end)."""

    def __init__(self, sanity: bool) -> None:
        self.sanity, self.sent = sanity, False

    def on_validation_batch_end(self, trainer, *args, **kwargs) -> None:
        if not self.sent and trainer.sanity_checking == self.sanity:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("sanity", [False, True])
def test_sigterm_during_validation_is_not_lost(data, tmp_path, sanity):
    """Lightning turns a SIGTERM during validation into an exit with status 0 and no checkpoint."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stopped:
        api.train(None, [*data, f"trainer.output_dir={run}"], callbacks=[_SignalDuring(sanity)])
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before, "handlers restored"
    ckpt = run / "checkpoints" / "interrupted.ckpt"
    if sanity:  # before any training step: nothing to resume, and it says so
        assert "nothing to resume" in str(stopped.value) and not ckpt.exists()
    else:  # validation finishes, the next training batch runs, then the checkpoint
        assert torch.load(ckpt, weights_only=True)["global_step"] == 960 // 32 + 1
        assert f"resume='{run}'" in str(stopped.value)
