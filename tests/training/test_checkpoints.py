"""Checkpoints are written beside their final name and renamed: a kill or a full disk keeps the previous one; a
damaged checkpoint is named and the previous good one used; the run's outputs follow the umask."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch

from korpair import api
from korpair.errors import DiskFullError, ModelFolderError, TrainingInterrupted
from korpair.training.resume import checkpoint_problem, find_resume_checkpoint
from tools.sample_corpus import generate_pair_task

TINY = ["model.from_scratch=true", "model.vocab_size=2000", "model.hidden_size=64", "model.num_layers=2",
        "model.num_heads=2", "model.intermediate_size=128", "trainer.progress_bar=false",
        "trainer.max_epochs=2", "optim.lr=5e-4"]
STEPS_PER_EPOCH = 320 // 32
FAULT_AT_STEP = STEPS_PER_EPOCH + 3  # in the second epoch: the first validation's checkpoints exist


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("ckpt-data")
    rows = generate_pair_task(400, seed=7)
    for name, part in (("train", rows[:320]), ("validation", rows[320:])):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return ["corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
            f"corpus.validation_file={folder / 'validation.jsonl'}", f"data.cache_dir={folder / 'cache'}", *TINY]


def _fd_folder(fd: int) -> Path:
    return Path(os.readlink(f"/proc/self/fd/{fd}")).parent


def install_faults(run: Path, fault: str) -> None:
    """Make the next write of a checkpoint over an existing one fail: ``fault`` is "kill" or "enospc".

    Renames from another folder into checkpoints/ fail with EXDEV, as when $TMPDIR is on another filesystem
    (the setting that the issue's kill and full disk hit): a writer then has to copy. The fault strikes
    while the checkpoint's bytes reach the disk (a copy, or the fsync of a file in checkpoints/) and, for a
    kill, also between the write and the rename.
    """
    ckpts = run / "checkpoints"
    real = {name: getattr(os, name) for name in ("replace", "rename", "sendfile", "fsync")}

    def armed() -> bool:  # a previous checkpoint is there to be lost
        return (ckpts / "last.ckpt").exists()

    def strike() -> None:
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def renamer(name: str):
        def rename(src, dst, **kwargs):
            dst_path, src_path = Path(os.fsdecode(dst)), Path(os.fsdecode(src))
            if armed() and dst_path.parent == ckpts and dst_path.suffix == ".ckpt":
                if src_path.parent != ckpts:
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src_path), str(dst_path))
                if fault == "kill":
                    strike()
            return real[name](src, dst, **kwargs)
        return rename

    def sendfile(out_fd, in_fd, offset, count):
        if armed() and _fd_folder(out_fd) == ckpts:
            real["sendfile"](out_fd, in_fd, offset, min(count, 64 * 1024))
            strike()
        return real["sendfile"](out_fd, in_fd, offset, count)

    def fsync(fd):
        if armed() and _fd_folder(fd) == ckpts and fault == "enospc":
            strike()
        return real["fsync"](fd)

    os.replace, os.rename, os.sendfile, os.fsync = renamer("replace"), renamer("rename"), sendfile, fsync


class SaveLastAt(L.Callback):
    """Writes last.ckpt at a chosen step, through the Trainer as ModelCheckpoint does."""

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.global_step == FAULT_AT_STEP:
            trainer.save_checkpoint(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt")


def _intact(path: Path) -> int:
    """The global step of a checkpoint that reads through whole (every member's CRC), independent of korpair."""
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None, path
    return torch.load(path, weights_only=True, map_location="cpu")["global_step"]


def _temp_files(*folders: Path) -> list[str]:
    return sorted(p.name for folder in folders if folder.exists() for p in folder.iterdir()
                  if p.name.startswith(".") or p.name.startswith("tmp"))


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from test_checkpoints import SaveLastAt, install_faults
    from korpair import api
    run, overrides = Path(sys.argv[2]), sys.argv[3:]
    install_faults(run, "kill")
    api.train(None, [*overrides, f"trainer.output_dir={run}"], callbacks=[SaveLastAt()])
""")


def test_a_kill_while_a_checkpoint_is_written_keeps_the_previous_one(data, tmp_path):
    run, tmpdir = tmp_path / "run", tmp_path / "tmpdir"
    tmpdir.mkdir()
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(Path(__file__).parent), str(run), *data],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmpdir)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    assert _intact(last) == STEPS_PER_EPOCH, "the first validation's checkpoint, whole"
    assert _temp_files(tmpdir) == [], "nothing leaked into $TMPDIR"

    result = api.train(resume=run)
    assert result.metrics["global_step"] == 2 * STEPS_PER_EPOCH
    assert _temp_files(run / "checkpoints") == [], "the killed write's temporary file is gone"


def test_a_full_disk_while_a_checkpoint_is_written_keeps_the_previous_one(data, tmp_path, monkeypatch):
    run, tmpdir = tmp_path / "run", tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmpdir))
    for name in ("replace", "rename", "sendfile", "fsync"):
        monkeypatch.setattr(os, name, getattr(os, name))  # put back after the test
    install_faults(run, "enospc")
    with pytest.raises(DiskFullError, match="last.ckpt: no space left on device") as err:
        api.train(None, [*data, f"trainer.output_dir={run}"], callbacks=[SaveLastAt()])
    assert f"resume='{run}'" in str(err.value)
    assert _intact(run / "checkpoints" / "last.ckpt") == STEPS_PER_EPOCH
    assert _temp_files(run / "checkpoints", tmpdir) == []


def _checkpoint(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.arange(4096.0)}}, path)
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the tensor data: torch.load would read it without noticing
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, lambda p: p.write_bytes(b""),
                                    lambda p: p.write_bytes(os.urandom(5000))],
                         ids=["truncated", "same-size-garbage", "empty", "garbage"])
def test_a_damaged_checkpoint_is_named_and_the_previous_good_one_used(tmp_path, caplog, damage):
    ckpts = tmp_path / "checkpoints"
    interrupted = _checkpoint(ckpts / "interrupted.ckpt", 30)
    last = _checkpoint(ckpts / "last.ckpt", 20)
    _checkpoint(ckpts / "best.ckpt", 10)
    damage(interrupted)
    assert checkpoint_problem(interrupted) is not None
    with caplog.at_level(logging.WARNING):
        assert find_resume_checkpoint(tmp_path) == last
    assert str(interrupted) in caplog.text and "damaged" in caplog.text


def test_damaged_interruption_and_last_checkpoints_fall_back_to_best(tmp_path, caplog):
    ckpts = tmp_path / "checkpoints"
    _truncate(_checkpoint(ckpts / "interrupted.ckpt", 30))
    (ckpts / "last.ckpt").write_bytes(b"")
    best = _checkpoint(ckpts / "best.ckpt", 10)
    with caplog.at_level(logging.WARNING):
        assert find_resume_checkpoint(tmp_path) == best
    assert "interrupted.ckpt" in caplog.text and "last.ckpt" in caplog.text


def test_no_good_checkpoint_says_so(tmp_path):
    ckpts = tmp_path / "checkpoints"
    _truncate(_checkpoint(ckpts / "last.ckpt", 20))
    (ckpts / "best.ckpt").write_bytes(b"")
    with pytest.raises(ModelFolderError, match="no usable checkpoint") as err:
        find_resume_checkpoint(tmp_path)
    message = str(err.value)
    assert "last.ckpt is damaged" in message and "best.ckpt is damaged (empty" in message
    assert "overwrite=True" in message


class InterruptAt(L.Callback):
    """Ctrl+C at a chosen step, in the middle of the second epoch."""

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        if trainer.global_step == FAULT_AT_STEP:
            signal.raise_signal(signal.SIGINT)


def test_resume_from_a_damaged_interruption_checkpoint_uses_the_last_one(data, tmp_path, caplog):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        api.train(None, [*data, f"trainer.output_dir={run}"], callbacks=[InterruptAt()])
    interrupted = run / "checkpoints" / "interrupted.ckpt"
    _truncate(interrupted)
    with caplog.at_level(logging.WARNING):
        result = api.train(resume=run)
    assert f"{interrupted} is damaged" in caplog.text
    assert result.metrics["global_step"] == 2 * STEPS_PER_EPOCH


class CrashAt(L.Callback):
    """An exception at a chosen step: the run stops as a kill would stop it, writing nothing more."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("crashed")


def _weights_differ(a: Path, b: Path) -> list[str]:
    """The tensors in which the final last.ckpt of run ``a`` and of run ``b`` differ."""
    first, second = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (a, b))
    return [k for k, v in first.items() if not torch.equal(v, second[k])]


def test_resume_from_an_epoch_end_checkpoint_equals_the_uninterrupted_run(data, tmp_path):
    """last.ckpt is written at an epoch's end; the next epoch's dropout masks must be the uninterrupted run's
    (starting an epoch's DataLoader iterator drew a seed from the global generator, which no resume replays)."""
    api.train(None, [*data, f"trainer.output_dir={tmp_path / 'a'}"])
    run = tmp_path / "b"
    with pytest.raises(RuntimeError, match="crashed"):
        api.train(None, [*data, f"trainer.output_dir={run}"], callbacks=[CrashAt(FAULT_AT_STEP)])
    assert _intact(run / "checkpoints" / "last.ckpt") == STEPS_PER_EPOCH
    api.train(resume=run)
    assert _weights_differ(tmp_path / "a", run) == []


def test_resume_in_the_middle_of_a_later_epoch_equals_the_uninterrupted_run(data, tmp_path):
    """The position inside the second epoch is replayed (the sampler never heard the epoch, so a position in
    epoch 1 matched no pass and the epoch started over)."""
    api.train(None, [*data, f"trainer.output_dir={tmp_path / 'a'}"])
    run = tmp_path / "b"
    with pytest.raises(TrainingInterrupted):
        api.train(None, [*data, f"trainer.output_dir={run}"], callbacks=[InterruptAt()])
    state = torch.load(run / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert state["PairDataModule"] == {"epoch": 1, "train_batches_done": FAULT_AT_STEP + 1 - STEPS_PER_EPOCH}
    api.train(resume=run)
    assert _weights_differ(tmp_path / "a", run) == []


class FirstBatches(L.Callback):
    """Records the first training batch of every epoch."""

    def __init__(self) -> None:
        self.first: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self.first.append(batch["input_ids"][:, :4].tolist())


def test_every_epoch_is_shuffled_anew(data, tmp_path):
    """Lightning sets the epoch on ``batch_sampler.sampler``; the length-grouped sampler must hear it."""
    seen = FirstBatches()
    api.train(None, [*data, f"trainer.output_dir={tmp_path / 'run'}"], callbacks=[seen])
    assert len(seen.first) == 2 and seen.first[0] != seen.first[1]


class DamageBestAtTheEnd(L.Callback):
    def on_train_end(self, trainer, *args, **kwargs) -> None:
        _truncate(Path(trainer.checkpoint_callback.best_model_path))


def test_a_best_checkpoint_damaged_before_it_is_reloaded_is_named(data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ModelFolderError, match=r"best\.ckpt: damaged checkpoint, truncated"):
        api.train(None, [*data, f"trainer.output_dir={run}"], callbacks=[DamageBestAtTheEnd()])
    assert not (run / "model").exists()


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_every_output_of_a_run_follows_the_umask(data, tmp_path, mask, file_mode, dir_mode):
    previous = os.umask(mask)
    try:
        run = tmp_path / "run"
        # a features cache of its own, checked too: a shared data.cache_dir must stay readable
        api.train(None, [*data, f"trainer.output_dir={run}", "trainer.max_epochs=1",
                         f"data.cache_dir={tmp_path / 'cache'}"])
        api.predict_file(run / "model", _pairs_file(tmp_path), run / "predictions.jsonl")
        api.evaluate(run / "model", output_dir=run / "eval")
    finally:
        os.umask(previous)
    for name in ("model/model.safetensors", "model/config.json", "metrics.json", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "predictions.jsonl", "eval/metrics.json", "training_curves.png"):
        assert (run / name).is_file(), name
    assert any((tmp_path / "cache").iterdir())
    written = [p for root in (run, tmp_path / "cache") for p in [root, *root.rglob("*")]]
    files = {p.relative_to(tmp_path): oct(stat.S_IMODE(p.stat().st_mode)) for p in written if p.is_file()}
    folders = {p.relative_to(tmp_path): oct(stat.S_IMODE(p.stat().st_mode)) for p in written if p.is_dir()}
    assert {k: v for k, v in files.items() if v != oct(file_mode)} == {}
    assert {k: v for k, v in folders.items() if v != oct(dir_mode)} == {}


def _pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"premise": "비가 온다", "hypothesis": "날씨가 맑다"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path
