"""Stop cleanly on SIGINT/SIGTERM and continue exactly where training stopped.

``ResumeCallback`` turns the first Ctrl+C (or a scheduler's SIGTERM) into a
checkpoint written at the end of the current batch: model, optimizer,
scheduler, step counters (Lightning), the position inside the epoch (the data
module's checkpoint state) and the random-number generators. Resuming from it
replays the same batches in the same order with the same dropout masks, so an
interrupted-and-resumed run ends where an uninterrupted one would.

Example::

    korpair.train("sample", overrides=["trainer.output_dir=runs/a"])    # Ctrl+C mid-epoch
    korpair.train(resume="runs/a")                                    # same result as never stopping
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch

from korpair.errors import TrainingInterrupted

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted.ckpt"
LAST = "last.ckpt"


def find_resume_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint to continue from: an interruption's, else the last one, else none."""
    folder = Path(output_dir) / "checkpoints"
    for name in (INTERRUPTED, LAST):
        if (folder / name).is_file():
            return folder / name
    return None


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    trainer.save_checkpoint(tmp)
    if trainer.is_global_zero:
        os.replace(tmp, path)


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
