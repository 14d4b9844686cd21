"""The run folder under kills, overwrites and concurrent runs: a run is resumable, replaceable and never shared."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import write_pair_task_files

from korpair import api
from korpair.errors import CorpusError, OutputExistsError

TINY = ["model.from_scratch=true", "model.vocab_size=2000", "model.hidden_size=64", "model.num_layers=2",
        "model.num_heads=2", "model.intermediate_size=128", "trainer.progress_bar=false",
        "trainer.log_every_n_steps=2", "optim.lr=5e-4", "data.batch_size=32", "trainer.max_epochs=1"]
STEPS_PER_EPOCH = 320 // 32
INTERNAL = {".korpair.lock", ".korpair.owner"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[str]:
    return [*write_pair_task_files(tmp_path_factory.mktemp("run-folder-data"), 400, 320, seed=11), *TINY]


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """A finished one-epoch run; tests work on copies of it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    api.train(None, [*data, f"trainer.output_dir={out}"])
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run folder (but the lock and its owner): its bytes and mtime."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in INTERNAL}


class CountSteps(L.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.batches += 1


KILLER = """
import os, signal, sys
import lightning as L
from korpair import api

class KillAtStep(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= {step}:
            os.kill(os.getpid(), signal.SIGKILL)

api.train(None, {overrides!r}, overwrite={overwrite}, callbacks=[KillAtStep()])
"""


def train_and_kill_at_step(overrides: list[str], step: int, overwrite: bool = False) -> None:
    """Train in a subprocess that SIGKILLs itself once it has done ``step`` optimizer steps."""
    code = KILLER.format(step=step, overrides=overrides, overwrite=overwrite)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


def train_command(overrides: list[str], *flags: str) -> list[str]:
    cmd = [sys.executable, "-m", "korpair", "train", *flags]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, f"exited before {what}: " + proc.communicate()[0]
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.005)


# ---- item 1: a run killed before its first checkpoint starts again


def test_sigkill_during_encoding_then_resume_auto_trains_to_the_end(data, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "fresh-cache"
    overrides = [*data, f"trainer.output_dir={out}", f"data.cache_dir={cache}"]
    proc = subprocess.Popen(train_command(overrides), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(cache, proc, "encoding")  # the features cache folder is made when encoding starts
    proc.kill()
    proc.wait(timeout=60)

    result = api.train(None, overrides, resume="auto")
    assert result.metrics["global_step"] == STEPS_PER_EPOCH
    assert (out / "model" / "model.safetensors").is_file() and (out / "metrics.json").is_file()


def test_sigkill_before_first_checkpoint_then_resume_starts_the_run_again(data, tmp_path):
    out = tmp_path / "run"
    overrides = [*data, f"trainer.output_dir={out}"]
    train_and_kill_at_step(overrides, step=3)
    assert (out / "korpair_train.yaml").is_file() and not (out / "checkpoints" / "last.ckpt").exists()

    # resume=DIR starts the same run again, as resume='auto' would; the dead run's lock blocks nothing
    steps = CountSteps()
    result = api.train(resume=out, callbacks=[steps])
    assert result.metrics["global_step"] == steps.batches == STEPS_PER_EPOCH
    assert not (out / ".korpair-previous").exists()


# ---- item 2: the resume point is saved at every validation and every N steps; a finished run is left alone


def test_sigkill_late_in_a_run_loses_only_the_steps_since_the_last_validation(data, tmp_path):
    out = tmp_path / "run"
    # a learning rate this small leaves val_accuracy as it was: no validation after the first improves it
    overrides = [*data, f"trainer.output_dir={out}", "trainer.max_epochs=3", "optim.lr=1e-9"]
    train_and_kill_at_step(overrides, step=2 * STEPS_PER_EPOCH + 5)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * STEPS_PER_EPOCH

    # a run of another config is no continuation of it: refused, and the error says what differs
    with pytest.raises(OutputExistsError, match=r"another config \(optim\.lr: 1e-09 -> 0\.001\)"):
        api.train(None, [*overrides, "optim.lr=1e-3"], resume="auto")
    steps = CountSteps()
    result = api.train(None, overrides, resume="auto", callbacks=[steps])
    assert steps.batches == STEPS_PER_EPOCH, "only the last epoch is trained again"
    assert result.metrics["global_step"] == 3 * STEPS_PER_EPOCH


def test_resume_point_every_n_steps_resumes_exactly(data, tmp_path):
    base = [*data, "trainer.checkpoint_every_n_steps=4"]
    baseline = api.train(None, [*base, f"trainer.output_dir={tmp_path / 'a'}"])

    out = tmp_path / "b"
    overrides = [*base, f"trainer.output_dir={out}"]
    train_and_kill_at_step(overrides, step=7)  # inside the first epoch, before any validation
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4

    steps = CountSteps()
    resumed = api.train(None, overrides, resume="auto", callbacks=[steps])
    assert steps.batches == STEPS_PER_EPOCH - 4
    for key in ("global_step", "val_loss", "val_accuracy"):
        assert round(resumed.metrics[key], 4) == round(baseline.metrics[key], 4), key


def test_finished_run_is_returned_as_it_is_and_extended_only_when_asked(finished, data, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    overrides = [*data, f"trainer.output_dir={out}"]
    before = snapshot(out)
    recorded = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    steps = CountSteps()

    assert api.train(None, overrides, resume="auto", callbacks=[steps]).metrics == recorded
    assert api.train(resume=out, callbacks=[steps]).metrics == recorded
    assert steps.batches == 0 and snapshot(out) == before, "a finished run is not trained or written again"

    # more epochs: the run continues from its last checkpoint
    longer = api.train(resume=out, overrides=["trainer.max_epochs=2"], callbacks=[steps])
    assert steps.batches == STEPS_PER_EPOCH and longer.metrics["global_step"] == 2 * STEPS_PER_EPOCH
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["global_step"] == 2 * STEPS_PER_EPOCH
    assert (out / "logs" / "metrics-part1.csv").is_file()
    # the folder now holds a two-epoch run: the one-epoch config is another run
    with pytest.raises(OutputExistsError, match=r"trainer\.max_epochs: 2 -> 1"):
        api.train(None, overrides, resume="auto")


# ---- item 5: overwrite replaces the old run only once the new one can take its place


def test_overwrite_with_a_bad_row_keeps_every_file_of_the_old_run(finished, data, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"premise": "비가 온다", "hypothesis": "맑다", "label": "entailment"}\n{"premise": "x"}\n',
                   encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{bad}:2"):
        api.train(None, [*data, f"trainer.output_dir={out}", f"corpus.train_file={bad}"], overwrite=True)
    assert snapshot(out) == before


def test_overwrite_that_fails_or_is_killed_before_its_first_checkpoint_keeps_the_old_run(finished, data, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    before = snapshot(out)
    changed = [*data, f"trainer.output_dir={out}", "optim.lr=1e-3"]

    class Crash(L.Callback):
        def on_train_batch_end(self, *args, **kwargs) -> None:
            raise RuntimeError("crashed mid-training")

    with pytest.raises(RuntimeError, match="crashed mid-training"):
        api.train(None, changed, overwrite=True, callbacks=[Crash()])
    assert snapshot(out) == before

    train_and_kill_at_step(changed, step=3, overwrite=True)
    assert (out / ".korpair-previous").is_dir()
    # the next run on the folder puts the old run back: here, resume='auto' with its config finds it finished
    steps = CountSteps()
    api.train(None, [*data, f"trainer.output_dir={out}"], resume="auto", callbacks=[steps])
    assert steps.batches == 0 and snapshot(out) == before

    # an overwrite that succeeds replaces it and leaves nothing aside
    result = api.train(None, changed, overwrite=True)
    assert result.metrics["peak_lr"] == 1e-3
    assert not (out / ".korpair-previous").exists() and not (out / ".korpair-previous.deleting").exists()
    assert snapshot(out)["model/model.safetensors"] != before["model/model.safetensors"]


# ---- item 6: one run at a time in a folder


GATED = """
import time
from pathlib import Path
import lightning as L
from korpair import api

class WaitForGate(L.Callback):
    def on_train_start(self, trainer, pl_module):
        deadline = time.monotonic() + 120
        while not Path({gate!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.05)

api.train(None, {overrides!r}, callbacks=[WaitForGate()])
"""


def test_two_runs_into_one_folder_the_second_exits_2_naming_the_first(data, tmp_path):
    out, gate = tmp_path / "run", tmp_path / "gate"
    overrides = [*data, f"trainer.output_dir={out}"]
    # the first run holds the folder until the gate opens, so that the second surely meets it
    first = subprocess.Popen([sys.executable, "-c", GATED.format(gate=str(gate), overrides=overrides)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(out / "korpair_train.yaml", first, "writing into the folder")
        second = subprocess.run(train_command(overrides, "--overwrite"), capture_output=True, text=True,
                                timeout=300)
        gate.touch()
        first_output, _ = first.communicate(timeout=300)
    finally:
        first.kill()
    assert second.returncode == 2, second.stdout + second.stderr
    message = " ".join((second.stdout + second.stderr).split())
    assert f"another run is using this output folder (pid {first.pid} on {socket.gethostname()}, started" in message
    assert first.returncode == 0, first_output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["global_step"] == STEPS_PER_EPOCH and (out / "model" / "model.safetensors").is_file()
    assert not (out / ".korpair.owner").exists(), "the holder's record goes with its lock"


@pytest.mark.slow  # three 2-process runs: about a minute on 2 loaded cores
def test_ddp_ranks_follow_rank_zero_when_a_finished_run_is_extended(data, tmp_path):
    """Lightning starts rank 1 inside rank 0's run: it must continue from the checkpoint rank 0 chose."""
    out = tmp_path / "run"
    ddp = [*data, f"trainer.output_dir={out}", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.strategy=ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(train_command(ddp), capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    steps_per_epoch = STEPS_PER_EPOCH // 2  # each rank takes half the batches

    longer = subprocess.run(train_command(["trainer.max_epochs=2"], "--resume", str(out)), capture_output=True,
                            text=True, timeout=300, env=env)
    assert longer.returncode == 0, longer.stdout[-3000:] + longer.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2 * steps_per_epoch
    before = snapshot(out)
    again = subprocess.run(train_command([*ddp, "trainer.max_epochs=2"], "--resume", "auto"), capture_output=True,
                           text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert snapshot(out) == before, "a finished run is returned as it is, by every rank"


def test_the_next_holder_finishes_what_a_killed_run_left_half_done(tmp_path):
    from korpair.training.run_folder import hold_run_folder

    out = tmp_path / "run"
    # killed while setting the old run aside (one file moved, one not), and while deleting an older set-aside
    (out / ".korpair-previous.moving").mkdir(parents=True)
    (out / ".korpair-previous.moving" / "metrics.json").write_text("{}")
    (out / "korpair_train.yaml").write_text("old")
    (out / ".korpair-previous.deleting" / "checkpoints").mkdir(parents=True)
    with hold_run_folder(out) as folder:
        assert [p.name for p in folder.entries()] == ["korpair_train.yaml", "metrics.json"]
        assert not folder.killed_start()
        # the folder is held: a second holder is refused, and told who holds it
        with pytest.raises(OutputExistsError, match=rf"using this output folder \(pid {os.getpid()} on "):
            with hold_run_folder(out):
                pass
    assert sorted(p.name for p in out.iterdir()) == [".korpair.lock", "korpair_train.yaml", "metrics.json"]
