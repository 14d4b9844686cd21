"""Encoded pairs -> padded batches: a length-grouped sampler, a collator, the Lightning data module.

Example::

    data = PairDataModule(train_feats, val_feats, DataConfig(batch_size=32), pad_id=0, seed=7)
    trainer.fit(task, datamodule=data)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from korpair.config import DataConfig
from korpair.features.encode import EncodedPairs
from korpair.hardware import pad_multiple


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Random batches of similar-length pairs, sharded across DDP ranks.

    Shuffle all indices, cut them into windows of ``window`` batches, sort each
    window by length and cut it into batches, then shuffle the batches: little
    padding, yet batch order stays random. With ``shuffle=False`` batches come
    in a fixed, length-sorted order (evaluation). Every rank gets the same
    number of training batches (a DDP step needs all ranks); for evaluation
    (``even=False``) each pair is seen exactly once across ranks. Memory: the
    lengths and one permutation as NumPy arrays (8 bytes a pair each) and one
    small array per batch; nothing per pair is a Python object.

    Example::

        sampler = LengthGroupedBatchSampler(feats.lengths, batch_size=32, seed=7)
        next(iter(sampler))[:3]  # [81234, 5120, 733410]
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, *, shuffle: bool = True,
                 group_by_length: bool = True, seed: int = 0, window: int = 50,
                 num_replicas: int = 1, rank: int = 0, even: bool = True) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.seed = seed
        self.window = window
        self.num_replicas = num_replicas
        self.rank = rank
        self.even = even
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches already trained in it)

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the next pass as epoch ``epoch`` (each epoch its own order, the same on every rank)."""
        self.epoch = epoch

    @property
    def sampler(self) -> LengthGroupedBatchSampler:
        """Itself: Lightning sets the epoch on ``batch_sampler.sampler``, never on the batch sampler."""
        return self

    def resume(self, epoch: int, batches_done: int) -> None:
        """Make the next pass over ``epoch`` skip its first ``batches_done`` batches, which were trained
        before an interruption. The batches are the same (same seed and epoch), so the rest replay in
        the same order; a pass over any other epoch, or a count of 0 or a whole epoch, skips nothing."""
        self._resume = (epoch, batches_done)

    def _all_batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable") if self.group_by_length else np.arange(n)
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        batches: list[np.ndarray] = []
        span = self.window * self.batch_size if self.group_by_length else n
        for start in range(0, n, span):
            chunk = order[start : start + span]
            if self.group_by_length:
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _my_batches(self) -> list[np.ndarray]:
        batches = self._all_batches()
        if self.num_replicas > 1:
            if self.even:
                batches = batches[: len(batches) - len(batches) % self.num_replicas]
            batches = batches[self.rank :: self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._my_batches()
        resume, self._resume = self._resume, None
        skip = resume[1] if resume and resume[0] == self.epoch and 0 < resume[1] < len(batches) else 0
        for batch in batches[skip:]:
            yield batch.tolist()

    def __len__(self) -> int:
        n_batches = math.ceil(len(self.lengths) / self.batch_size)
        if self.num_replicas > 1:
            if self.even:
                return n_batches // self.num_replicas
            return len(range(self.rank, n_batches, self.num_replicas))
        return n_batches


class PairCollator:
    """Pad a list of encoded pairs to the longest one (rounded up to ``pad_to_multiple_of``).

    Example::

        batch = PairCollator(pad_id=0, pad_to_multiple_of=8)([feats[0], feats[1]])
        sorted(batch), batch["input_ids"].shape
        # (['attention_mask', 'input_ids', 'labels', 'token_type_ids'], torch.Size([2, 24]))
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id = pad_id
        self.multiple = pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        if self.multiple:
            longest = -(-longest // self.multiple) * self.multiple
        n = len(items)
        ids = np.full((n, longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, longest), dtype=np.int64)
        tti = np.zeros((n, longest), dtype=np.int64) if "token_type_ids" in items[0] else None
        for row, it in enumerate(items):
            k = len(it["input_ids"])
            ids[row, :k] = it["input_ids"]
            mask[row, :k] = 1
            if tti is not None:
                tti[row, :k] = it["token_type_ids"]
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if tti is not None:
            batch["token_type_ids"] = torch.from_numpy(tti)
        if "labels" in items[0]:
            # class ids for cross-entropy, scores (float) for a regression loss
            kind = torch.float32 if isinstance(items[0]["labels"], float) else torch.long
            batch["labels"] = torch.tensor([it["labels"] for it in items], dtype=kind)
        if "soft_labels" in items[0]:  # the annotators' vote distribution (corpus.soft_labels)
            batch["soft_labels"] = torch.from_numpy(np.stack([it["soft_labels"] for it in items]))
        return batch


class PairDataModule(L.LightningDataModule):
    """Train and validation loaders over already-encoded features.

    Batches come from ``LengthGroupedBatchSampler`` over the features' lengths,
    sharded across DDP ranks by the sampler itself (build the Trainer with
    ``use_distributed_sampler=False``).

    Its position inside the training epoch is checkpoint state, through
    Lightning's data-module protocol (``state_dict`` / ``load_state_dict``,
    saved in every checkpoint): a run resumed from a mid-epoch checkpoint
    trains the rest of that epoch's batches, in the same order, and not the
    whole epoch again.

    Example::

        data = PairDataModule(train_feats, val_feats, DataConfig(batch_size=32), pad_id=0, seed=7)
        trainer.fit(task, datamodule=data)
    """

    def __init__(self, train: EncodedPairs, validation: EncodedPairs, cfg: DataConfig,
                 pad_id: int, seed: int = 0) -> None:
        super().__init__()
        self.train, self.validation, self.cfg = train, validation, cfg
        self.pad_id, self.seed = pad_id, seed
        # (epoch, training batches consumed in it); counted where batches reach the model, because
        # Lightning fetches a batch ahead and the sampler's own count would run one (or more) in front
        self._position = (0, 0)
        self._resume: tuple[int, int] | None = None

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            epoch, done = self._position
            self._position = (trainer.current_epoch, done + 1 if epoch == trainer.current_epoch else 1)
        return batch

    def state_dict(self) -> dict:
        epoch, done = self._position
        current = self.trainer.current_epoch if getattr(self, "trainer", None) is not None else epoch
        return {"epoch": current, "train_batches_done": done if epoch == current else 0}

    def load_state_dict(self, state: dict) -> None:
        # Lightning restores this before it builds the loaders: the sampler made next takes it.
        self._resume = (int(state["epoch"]), int(state["train_batches_done"]))
        self._position = self._resume

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _pad_multiple(self) -> int | None:
        trainer = getattr(self, "trainer", None)
        device_type = trainer.strategy.root_device.type if trainer is not None else "cpu"
        return pad_multiple(self.cfg.pad_to_multiple_of, device_type)

    def _loader(self, feats: EncodedPairs, batch_size: int, train: bool) -> DataLoader:
        world, rank = self._world()
        sampler = LengthGroupedBatchSampler(
            feats.lengths, batch_size, shuffle=train, group_by_length=self.cfg.group_by_length,
            seed=self.seed, num_replicas=world, rank=rank, even=train,
        )
        if train and self._resume is not None:
            sampler.resume(*self._resume)
            self._resume = None
        return DataLoader(
            feats, batch_sampler=sampler,
            collate_fn=PairCollator(self.pad_id, self._pad_multiple()),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            # A generator of its own: each new iterator draws a seed from it, not from the global generator,
            # whose draw at an epoch's start a resume from that epoch's end checkpoint cannot replay.
            generator=torch.Generator(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.cfg.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation, self.cfg.eval_batch_size, train=False)
