"""Stop cleanly on SIGINT/SIGTERM and continue exactly where training stopped.

``ResumeCallback`` turns the first Ctrl+C (or a scheduler's SIGTERM) into a
checkpoint written at the end of the current batch: model, optimizer,
scheduler, step counters (Lightning), the position inside the epoch (the data
module's checkpoint state) and the random-number generators. Resuming from it
replays the same batches in the same order with the same dropout masks, so an
interrupted-and-resumed run ends where an uninterrupted one would.

Every checkpoint (best, last, interrupted) is written by ``AtomicCheckpointIO``
to a temporary name beside its final one, flushed and renamed: a kill or a
full disk leaves the previous checkpoint as it was. One damaged anyway (by an
older version, a copy, a disk) is named, and ``find_resume_checkpoint`` falls
back to the previous good one.

Example::

    korpair.train("sample", overrides=["trainer.output_dir=runs/a"])    # Ctrl+C mid-epoch
    korpair.train(resume="runs/a")                                    # same result as never stopping
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import signal
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from korpair.atomic import open_atomic, recover_leftovers
from korpair.errors import DiskFullError, ModelFolderError, TrainingInterrupted

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted.ckpt"
LAST = "last.ckpt"
BEST = "best.ckpt"


def find_resume_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint to continue from: an interruption's, else the last one, else the best; else none.

    A damaged checkpoint (empty, truncated, garbage) is skipped with a warning
    that names it; if every checkpoint is damaged, ``ModelFolderError`` says
    so. First settles what a killed run left half-written in the folder (a
    model swap, temporary files).
    """
    out = Path(output_dir)
    folder = out / "checkpoints"
    recover_leftovers(out)
    recover_leftovers(folder)
    damaged = []
    for name in (INTERRUPTED, LAST, BEST):
        path = folder / name
        if not path.is_file():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            if damaged:
                log.warning("%s: resuming from %s instead, the newest good checkpoint", "; ".join(damaged), path)
            return path
        damaged.append(f"{path} is damaged ({problem})")
    if damaged:
        raise ModelFolderError(f"{folder}: no usable checkpoint to resume from: {'; '.join(damaged)}. "
                               f"Start the run again with overwrite=True")
    return None


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with the checkpoint file ``path`` (missing, empty, truncated, corrupted), or None.

    A PyTorch checkpoint is a zip archive with a CRC-32 for each member:
    reading it through checks every byte, which ``torch.load`` does not.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "no such file"
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _GOOD:
        return None
    if stat.st_size == 0:
        return "empty: 0 bytes"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n.endswith("/data.pkl") for n in names):
                return "not a PyTorch checkpoint (no data.pkl)"
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return f"truncated or not a PyTorch checkpoint ({stat.st_size} bytes, no complete zip archive)"
    except (OSError, EOFError, ValueError) as err:
        return f"cannot be read: {err}"
    if bad is not None:
        return f"corrupted: {bad} fails its CRC-32 check"
    _GOOD.add(key)
    return None


_GOOD: set[tuple[str, int, int]] = set()  # checkpoints already read through, by (path, size, mtime)


def load_checkpoint_file(path: Path, *, hint: str = "") -> dict:
    """``torch.load`` a checkpoint on the CPU, tensors and plain values only (weights_only).

    A damaged file is a ``ModelFolderError`` naming it; ``hint`` says what to do.
    """
    check_checkpoint(path, hint)
    return torch.load(path, map_location="cpu", weights_only=True)


def check_checkpoint(path: Path, hint: str = "") -> None:
    """Raise ``ModelFolderError`` naming ``path`` if the checkpoint is damaged."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise ModelFolderError(f"{path}: damaged checkpoint, {problem}" + (f"; {hint}" if hint else ""))


def write_checkpoint(checkpoint: dict, path: Path) -> None:
    """Save ``checkpoint`` under a temporary name beside ``path``, flush it to disk, rename it.

    A kill or a full disk leaves the previous ``path`` as it was, and a full
    disk leaves no temporary file (a kill's is removed by the next write or
    resume).
    """
    path = Path(path)
    try:
        with open_atomic(path, "wb") as fh:
            torch.save(checkpoint, fh)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):  # no EDQUOT on Windows
            raise
        run = path.parent.parent
        raise DiskFullError(f"{path}: no space left on device while writing the checkpoint; the previous "
                           f"checkpoints are kept. Free some space, then continue with resume='{run}'") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, but every save is ``write_checkpoint`` and every load is checked first.

    Lightning's own save goes through a temporary file in ``$TMPDIR`` that is
    copied when the run folder is on another filesystem: a kill mid-copy
    leaves a truncated checkpoint under its final name.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Write ``checkpoint`` to ``path`` with ``write_checkpoint``."""
        if storage_options is not None:
            raise TypeError("korpair's checkpoint IO takes no storage_options")
        write_checkpoint(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict:
        """Load ``path`` as Lightning does, after checking that it is whole (``ModelFolderError`` if not)."""
        check_checkpoint(Path(path), "delete it to resume from an older checkpoint, if any")
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)


class ResumeCallback(L.Callback):
    """Checkpoint on SIGINT/SIGTERM at the next batch boundary; keep and restore the random generators."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self._signal: int | None = None
        self._previous: dict[int, object] = {}
        self._restore: dict | None = None
        self._launcher = None

    # ---- signals
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._launcher = trainer.strategy.launcher
        self._install()

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._signal is not None:
            return  # handlers can only be set from the main thread; after a signal, Ctrl+C aborts
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) != self._on_signal:
                self._previous.setdefault(sig, signal.signal(sig, self._on_signal))

    def _on_signal(self, signum: int, frame) -> None:
        if self._signal is None and self._launcher is not None and hasattr(self._launcher, "kill"):
            self._launcher.kill(signum)  # ranks that Lightning started as child processes stop too
        self._signal = signum
        log.warning("received %s: saving a checkpoint after this batch (press Ctrl+C again to abort)",
                    signal.Signals(signum).name)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C aborts at once

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._uninstall()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._uninstall()  # Lightning skips teardown hooks after an exception

    def _uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    # ---- at the batch boundary
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # every rank stops after the same batch, even if the signal reached them a batch apart
        if trainer.strategy.reduce_boolean_decision(self._signal is not None, all=False):
            path = self.output_dir / "checkpoints" / INTERRUPTED
            save_checkpoint_atomic(trainer, path)
            raise TrainingInterrupted(self.output_dir, trainer.global_step)

    def state_dict(self) -> dict:
        # The position inside the epoch is the data module's own checkpoint state (PairDataModule).
        return {"rng": capture_rng()}

    def load_state_dict(self, state: dict) -> None:
        self._restore = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning installs its own SIGTERM handler after on_fit_start; during validation it turns
        # SIGTERM into an exit with status 0 and no checkpoint. Ours goes back on top: validation
        # finishes, and the checkpoint is written after the next training batch.
        self._install()
        # Runs after Lightning restored the checkpoint and before the first batch is drawn.
        if self._restore is None:
            return
        state, self._restore = self._restore, None
        restore_rng(state["rng"])
        log.info("resumed at step %d (epoch %d)", trainer.global_step, trainer.current_epoch)


@contextlib.contextmanager
def signal_handlers_kept() -> Iterator[None]:
    """Put SIGINT/SIGTERM handlers back as they were, however ``fit`` ended.

    Lightning restores its own idea of them after an exception, later than the
    callbacks' hooks run; in a notebook a stale handler would swallow Ctrl+C.
    """
    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def save_checkpoint_atomic(trainer: L.Trainer, path: Path) -> None:
    """Save the trainer's state to ``path`` on rank 0, atomically (``AtomicCheckpointIO``)."""
    if not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
        raise TypeError("the Trainer needs plugins=[AtomicCheckpointIO()], as build_trainer sets")
    trainer.save_checkpoint(path)


def capture_rng() -> dict:
    # Tensors, ints and tuples only, so that weights_only loading accepts the checkpoint.
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
