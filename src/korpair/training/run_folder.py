"""A run's output folder: one run at a time, and an older run replaced only by a newer one that can take its place.

A run holds ``.korpair.lock`` for its whole length (an ``flock``, which dies
with its process, so a killed run blocks nobody) and records itself in
``.korpair.owner``: a second run into the folder is refused with an error that
names the first (pid, host, start time).

A run that starts from its first step moves whatever the folder held (an
older run) aside into ``.korpair-previous/``, all but ``model/``, which the
export swaps at the end. The files come back if the run fails before its
first checkpoint, and are deleted once it has one or when it finishes. After
a run killed before its first checkpoint (SIGKILL, a power cut), the next run
into the folder either starts that run again, if it continues it (same
config, or ``resume`` of the folder), or rolls it back first.

Example::

    with hold_run_folder(Path("runs/a")) as folder:   # raises OutputExistsError if a run holds it
        folder.set_aside()                            # the old run's files, until the new one has a checkpoint
        ...                                           # train
        folder.drop_previous()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from korpair.atomic import write_text
from korpair.config import TrainConfig
from korpair.errors import ModelFolderError, OutputExistsError
from korpair.training.resume import find_resume_checkpoint

log = logging.getLogger(__name__)

LOCK_NAME = ".korpair.lock"
OWNER_NAME = ".korpair.owner"
PREVIOUS = ".korpair-previous"
# being filled (a set-aside under way) or emptied (a restore under way): moved back either way
MOVING = ".korpair-previous.moving"
DELETING = ".korpair-previous.deleting"
INTERNAL = frozenset({LOCK_NAME, OWNER_NAME, PREVIOUS, MOVING, DELETING})
KEPT = frozenset({"model"})  # replaced by the export's atomic swap, never set aside


class RunFolder:
    """The output folder of a run, held by this process (see ``hold_run_folder``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def entries(self) -> list[Path]:
        """What the folder holds of runs: everything but the lock, the owner and set-aside files."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.name not in INTERNAL)

    def set_aside(self) -> None:
        """Move the folder's run files (all but ``model/``) into ``.korpair-previous/``.

        Also when there is nothing to move: the empty folder then marks a run
        that has no checkpoint yet, which a later run rolls back.
        """
        moving = self.path / MOVING
        moving.mkdir()
        for entry in self.entries():
            if entry.name not in KEPT:
                os.replace(entry, moving / entry.name)
        os.replace(moving, self.path / PREVIOUS)  # from here on the new run may write

    def killed_start(self) -> bool:
        """True if a run was killed here before its first checkpoint (after ``recover``): its files are in
        place, and what it replaced is still set aside."""
        return (self.path / PREVIOUS).is_dir()

    def roll_back(self) -> None:
        """Delete what a run that failed before its first checkpoint wrote; put what it set aside back."""
        self.discard_killed_start()
        os.replace(self.path / PREVIOUS, self.path / MOVING)
        self._move_back(self.path / MOVING)

    def discard_killed_start(self) -> None:
        """Delete a killed start's files (all but ``model/``), to start that run again; the set-aside stays."""
        for entry in self.entries():
            if entry.name not in KEPT:
                _remove(entry)

    def settle(self) -> str | None:
        """After a run failed: keep it if it has a checkpoint, else roll it back.

        Returns what it did: ``"kept"``, ``"rolled back"``, or None when nothing was set aside.
        """
        if not self.killed_start():
            return None
        if self._new_run_has_checkpoint():
            self.drop_previous()
            return "kept"
        self.roll_back()
        return "rolled back"

    def drop_previous(self) -> None:
        """Delete the set-aside files: the new run has something to put in their place."""
        shutil.rmtree(self.path / DELETING, ignore_errors=True)
        if (self.path / PREVIOUS).is_dir():
            # renamed first: a kill during the deletion leaves nothing that looks restorable
            os.replace(self.path / PREVIOUS, self.path / DELETING)
            shutil.rmtree(self.path / DELETING, ignore_errors=True)

    def recover(self) -> None:
        """Finish what a killed run left half-done: a deletion, a set-aside or a roll-back under way, or the
        set-aside files of a run that has a checkpoint. A start killed before its first checkpoint stays
        as it is: the next run either starts it again or rolls it back (``killed_start``)."""
        shutil.rmtree(self.path / DELETING, ignore_errors=True)
        if (self.path / MOVING).is_dir():
            self._move_back(self.path / MOVING)
        if self.killed_start() and self._new_run_has_checkpoint():
            self.drop_previous()

    def _new_run_has_checkpoint(self) -> bool:
        try:
            return find_resume_checkpoint(self.path) is not None
        except ModelFolderError:  # every checkpoint damaged: nothing to continue from
            return False

    def _move_back(self, moving: Path) -> None:
        for entry in moving.iterdir():
            target = self.path / entry.name
            if os.path.lexists(target):  # the set-aside copy is the one to keep
                _remove(target)
            os.replace(entry, target)
        moving.rmdir()


@contextlib.contextmanager
def hold_run_folder(path: Path, owner: bool = True) -> Iterator[RunFolder]:
    """Hold the output folder ``path`` for a run: lock it, record the holder, settle a killed run's leftovers.

    ``owner=False`` (DDP ranks other than 0, which start inside rank 0's run)
    gives the folder without locking or changing it. Raises
    ``OutputExistsError`` naming the holder if another run holds it.
    """
    folder = RunFolder(path)
    if not owner:
        yield folder
        return
    if folder.path.exists() and not folder.path.is_dir():
        raise OutputExistsError(f"{folder.path}: exists and is not a folder; choose another trainer.output_dir")
    created = not folder.path.exists()
    folder.path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder.path / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputExistsError(
            f"{folder.path}: another run is using this output folder ({_holder(folder.path)}); wait for it to "
            f"finish or stop it, or choose another trainer.output_dir") from None
    try:
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        write_text(folder.path / OWNER_NAME, json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": started}) + "\n")
        folder.recover()
        yield folder
    finally:
        # removed while still held, so that it never describes a later holder
        with contextlib.suppress(OSError):
            (folder.path / OWNER_NAME).unlink()
        # a run that stopped before writing anything (bad data, a config error) leaves no folder it made
        if created and [p.name for p in folder.path.iterdir()] == [LOCK_NAME]:
            with contextlib.suppress(OSError):
                (folder.path / LOCK_NAME).unlink()
                folder.path.rmdir()
        lock.release()


def _holder(folder: Path) -> str:
    """The running holder as recorded in ``.korpair.owner``, waiting briefly for one that just took the lock."""
    for _ in range(20):
        try:
            owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8"))
            return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return f"its holder has not recorded itself in {folder / OWNER_NAME}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def config_differences(saved: TrainConfig, cfg: TrainConfig) -> list[str]:
    """The keys whose values differ between a folder's saved config and ``cfg``, as ``key: saved -> now``.

    Keys that change where files go or how a run is shown, not what it trains, are left out.
    """
    before, now = _flat(saved.to_dict()), _flat(cfg.to_dict())
    return [f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in sorted(before.keys() | now.keys())
            if key not in RESULT_NEUTRAL_KEYS and before.get(key) != now.get(key)]


# Settings that leave the trained model as it is: a resubmitted job may change them.
RESULT_NEUTRAL_KEYS = frozenset({
    "trainer.output_dir", "trainer.progress_bar", "trainer.log_every_n_steps", "trainer.checkpoint_every_n_steps",
    "data.num_workers", "data.cache_dir", "corpus.data_dir", "corpus.download",
    "trainer.loggers", "trainer.experiment", "trainer.run_name", "trainer.tracking_uri",
})


def _flat(section: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
