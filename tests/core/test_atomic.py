"""Atomic outputs: modes follow the umask; a model swap killed between its renames is recovered; leftovers of
dead processes are removed, a live process's kept."""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from korpair import atomic
from korpair.atomic import open_atomic, write_dir, write_text

HOST = socket.gethostname()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_files_and_folders_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_text(tmp_path / "metrics.json", "{}")
    with open_atomic(tmp_path / "preds.bin", "wb") as fh:
        fh.write(b"x")

    def fill(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        (tmp / "sub").mkdir()
        # as safetensors 0.8 writes its files, whatever the umask
        os.close(os.open(tmp / "model.safetensors", os.O_WRONLY | os.O_CREAT, 0o600))

    write_dir(tmp_path / "model", fill)
    assert _mode(tmp_path / "metrics.json") == file_mode
    assert _mode(tmp_path / "preds.bin") == file_mode
    assert _mode(tmp_path / "model") == dir_mode
    assert _mode(tmp_path / "model" / "config.json") == file_mode
    assert _mode(tmp_path / "model" / "model.safetensors") == file_mode
    assert _mode(tmp_path / "model" / "sub") == dir_mode


# Dies by SIGKILL right after write_dir moved the old folder aside, before the new one moves in.
KILLED_MID_SWAP = textwrap.dedent("""
    import os, shutil, signal, sys
    from pathlib import Path
    from korpair.atomic import write_dir

    target, source = Path(sys.argv[1]), Path(sys.argv[2])
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if Path(src) == target:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace

    def fill(tmp):
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        (tmp / "version.txt").write_text("new")

    write_dir(target, fill)
""")


def _kill_mid_swap(target: Path, source: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_SWAP, str(target), str(source)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not target.exists(), "the kill landed between the two renames"


def _old_folder(tmp_path: Path) -> Path:
    target = tmp_path / "out" / "model"
    target.mkdir(parents=True)
    (target / "version.txt").write_text("old")
    return target


def test_write_dir_killed_between_its_renames_is_finished_by_the_next_write(tmp_path):
    target = _old_folder(tmp_path)
    source = tmp_path / "src"
    source.mkdir()
    _kill_mid_swap(target, source)

    def fail(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        write_dir(target, fail)
    assert (target / "version.txt").read_text() == "new", "the complete new folder is put in place"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"], "no leftovers"


def test_predictor_recovers_a_model_swap_killed_between_its_renames(tiny_model_dir, tmp_path):
    from korpair.inference.predictor import Predictor

    target = _old_folder(tmp_path)
    _kill_mid_swap(target, tiny_model_dir)
    predictor = Predictor.from_pretrained(target)
    assert predictor.predict([("비가 온다", "날씨가 맑다")])[0].label in predictor.labels
    assert (target / "version.txt").read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]


def test_a_swap_that_korpair_0_1_left_half_done_gets_its_folder_back(tmp_path):
    target = tmp_path / "model"
    dead = _dead_pid()
    old = tmp_path / f".model.{dead}.old"  # 0.1 named the moved-aside folder .NAME.PID.old
    old.mkdir()
    (old / "version.txt").write_text("old")
    atomic.recover_dir(target)
    assert (target / "version.txt").read_text() == "old"
    assert not old.exists()


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _leftover(folder: Path, name: str, pid: int, host: str, token: str, kind: str, is_dir: bool = True) -> Path:
    path = folder / f".{name}.{pid}@{host}.{token}.{kind}"
    if is_dir:
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"\0" * 1024)
    else:
        path.write_bytes(b"partial")
    return path


def test_leftovers_of_dead_processes_are_removed_and_a_live_ones_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dead = _dead_pid()
        target = tmp_path / "model"
        target.mkdir()
        stale = [_leftover(tmp_path, "model", dead, HOST, "0123abcd", kind) for kind in ("tmp", "new", "old", "del")]
        stale.append(_leftover(tmp_path, "metrics.json", dead, HOST, "89abcdef", "tmp", is_dir=False))
        kept = [_leftover(tmp_path, "model", live.pid, HOST, "00000000", "tmp"),
                _leftover(tmp_path, "model", os.getpid(), HOST, "11111111", "tmp"),
                # another host's process cannot be checked from here
                _leftover(tmp_path, "model", dead, "another-host", "22222222", "tmp")]

        write_dir(target, lambda tmp: (tmp / "version.txt").write_text("v2"))
        write_text(tmp_path / "metrics.json", "{}")
        assert [p.name for p in stale if p.exists()] == []
        assert [p.name for p in kept if not p.exists()] == []
        assert (target / "version.txt").read_text() == "v2"
    finally:
        live.kill()
        live.wait()


def test_recover_leftovers_settles_every_name_in_a_folder(tmp_path):
    dead = _dead_pid()
    new = _leftover(tmp_path, "model", dead, HOST, "0123abcd", "new")
    partial = _leftover(tmp_path, "last.ckpt", dead, HOST, "89abcdef", "tmp", is_dir=False)
    atomic.recover_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model" / "model.safetensors").exists() and not new.exists() and not partial.exists()


def test_a_missing_folder_with_another_hosts_leftover_waits_for_the_grace_period(tmp_path, monkeypatch):
    old = _leftover(tmp_path, "model", 12345, "another-host", "0123abcd", "old")
    atomic.recover_dir(tmp_path / "model")
    assert old.exists() and not (tmp_path / "model").exists(), "that host may be between its two renames"
    monkeypatch.setattr(atomic, "FOREIGN_GRACE_S", -1.0)
    atomic.recover_dir(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").exists() and not old.exists()


def test_a_full_disk_while_filling_keeps_the_previous_folder_and_leaves_nothing(tmp_path):
    target = _old_folder(tmp_path)

    def fill(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_dir(target, fill)
    with pytest.raises(OSError, match="No space"), open_atomic(target.parent / "metrics.json") as fh:
        fh.write("{")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (target / "version.txt").read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]


def test_recover_dir_on_an_unreadable_or_missing_parent_does_nothing(tmp_path):
    atomic.recover_dir(tmp_path / "no" / "such" / "model")
    atomic.recover_dir(Path("org/model"))  # a hub name
