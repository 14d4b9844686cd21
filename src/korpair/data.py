"""From pairs to padded batches: encode, cache on disk, group by length, collate.

Encoded features are stored as flat memory-mapped NumPy arrays (token ids plus
offsets), so a corpus larger than memory costs little RSS, and a second run
with the same data, tokenizer and max length reads them back instead of
tokenizing again.

>>> feats = encode_pairs_cached(tokenizer, pairs, label_map, max_length=64)
>>> batch = PairCollator(pad_id=0)([feats[i] for i in range(4)])
>>> batch["input_ids"].shape       # padded to the longest of the 4, not to 64
torch.Size([4, 24])
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from korpair.config import DataConfig
from korpair.corpora import LabelMap, Pair

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the on-disk layout changes
ENCODE_CHUNK = 4096  # pairs per tokenizer call: big enough for the Rust threads, small enough for RAM


def default_cache_dir() -> Path:
    root = os.environ.get("KORPAIR_HOME") or Path.home() / ".cache" / "korpair"
    return Path(root) / "features"


class EncodedPairs(Dataset):
    """Token ids of many pairs, flat, with offsets; item ``i`` is one pair's arrays."""

    def __init__(self, input_ids: np.ndarray, token_type_ids: np.ndarray | None,
                 offsets: np.ndarray, labels: np.ndarray | None) -> None:
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids
        self.offsets = offsets
        self.labels = labels

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> dict[str, np.ndarray | int]:
        start, end = self.offsets[i], self.offsets[i + 1]
        item: dict[str, np.ndarray | int] = {"input_ids": self.input_ids[start:end]}
        if self.token_type_ids is not None:
            item["token_type_ids"] = self.token_type_ids[start:end]
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "input_ids.npy", self.input_ids)
        np.save(folder / "offsets.npy", self.offsets)
        if self.token_type_ids is not None:
            np.save(folder / "token_type_ids.npy", self.token_type_ids)
        if self.labels is not None:
            np.save(folder / "labels.npy", self.labels)

    @classmethod
    def load(cls, folder: Path) -> EncodedPairs:
        def opt(name: str) -> np.ndarray | None:
            path = folder / f"{name}.npy"
            return np.load(path, mmap_mode="r") if path.exists() else None

        return cls(np.load(folder / "input_ids.npy", mmap_mode="r"), opt("token_type_ids"),
                   np.load(folder / "offsets.npy"), opt("labels"))


def encode_pairs(tokenizer, pairs: Sequence[Pair], label_map: LabelMap | None,
                 max_length: int) -> EncodedPairs:
    """Tokenize pairs as ``[CLS] a [SEP] b [SEP]``, truncating the longer text first."""
    use_tti = "token_type_ids" in tokenizer.model_input_names
    ids_chunks, tti_chunks, lengths = [], [], []
    for start in range(0, len(pairs), ENCODE_CHUNK):
        chunk = pairs[start : start + ENCODE_CHUNK]
        enc = tokenizer(
            [p.premise for p in chunk], [p.hypothesis for p in chunk],
            truncation="longest_first", max_length=max_length,
            return_attention_mask=False, return_token_type_ids=use_tti,
        )
        for ids in enc["input_ids"]:
            lengths.append(len(ids))
        ids_chunks.append(np.fromiter((t for ids in enc["input_ids"] for t in ids), dtype=np.int32))
        if use_tti:
            tti_chunks.append(np.fromiter((t for tt in enc["token_type_ids"] for t in tt), dtype=np.int8))
    offsets = np.zeros(len(pairs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    labels = None
    if label_map is not None and pairs and all(p.label is not None for p in pairs):
        labels = np.fromiter((label_map.id(p.label) for p in pairs), dtype=np.int64, count=len(pairs))
    cat = lambda chunks, dt: np.concatenate(chunks) if chunks else np.zeros(0, dtype=dt)  # noqa: E731
    return EncodedPairs(cat(ids_chunks, np.int32), cat(tti_chunks, np.int8) if use_tti else None,
                        offsets, labels)


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything in the tokenizer that changes token ids."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # truncation/padding are call-time state that transformers sets on the backend
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(list(tokenizer.model_input_names)).encode())
    return h.hexdigest()


def pairs_fingerprint(pairs: Sequence[Pair], label_map: LabelMap | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(label_map.names if label_map else None).encode())
    for p in pairs:
        # \x1f/\x1e separators cannot occur inside normal text, so boundaries are unambiguous
        h.update(f"{p.premise}\x1f{p.hypothesis}\x1f{p.label}\x1e".encode())
    return h.hexdigest()


def encode_pairs_cached(tokenizer, pairs: Sequence[Pair], label_map: LabelMap | None,
                        max_length: int, cache_dir: Path | None = None) -> EncodedPairs:
    """``encode_pairs`` with a disk cache keyed by data content, tokenizer and max length."""
    key = hashlib.sha256(json.dumps({
        "format": CACHE_FORMAT,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length,
        "pairs": pairs_fingerprint(pairs, label_map),
    }).encode()).hexdigest()[:32]
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / key
    if (folder / "offsets.npy").exists():
        log.info("features cache hit: %s", folder)
        return EncodedPairs.load(folder)
    feats = encode_pairs(tokenizer, pairs, label_map, max_length)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}."))
        feats.save(tmp)
        try:
            os.rename(tmp, folder)  # atomic; another process may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("features cached: %s", folder)
        return EncodedPairs.load(folder)
    except OSError as err:  # a read-only cache must not stop training
        log.warning("could not write the features cache in %s: %s", root, err)
        return feats


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Random batches of similar-length pairs, sharded across DDP ranks.

    Shuffle all indices, cut them into windows of ``window`` batches, sort each
    window by length and cut it into batches, then shuffle the batches: little
    padding, yet batch order stays random. With ``shuffle=False`` batches come
    in a fixed, length-sorted order (evaluation). Every rank gets the same
    number of training batches (a DDP step needs all ranks); for evaluation
    (``even=False``) each pair is seen exactly once across ranks.
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
        self.skip = 0  # batches already consumed this epoch (resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

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
        skip, self.skip = self.skip, 0
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
    """Pad a list of encoded pairs to the longest one (rounded up to ``pad_to_multiple_of``)."""

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
            batch["labels"] = torch.tensor([it["labels"] for it in items], dtype=torch.long)
        return batch


class PairDataModule(L.LightningDataModule):
    """Train and validation loaders over already-encoded features."""

    def __init__(self, train: EncodedPairs, validation: EncodedPairs, cfg: DataConfig,
                 pad_id: int, seed: int = 0) -> None:
        super().__init__()
        self.train, self.validation, self.cfg = train, validation, cfg
        self.pad_id, self.seed = pad_id, seed

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, feats: EncodedPairs, batch_size: int, train: bool) -> DataLoader:
        world, rank = self._world()
        sampler = LengthGroupedBatchSampler(
            feats.lengths, batch_size, shuffle=train, group_by_length=self.cfg.group_by_length,
            seed=self.seed, num_replicas=world, rank=rank, even=train,
        )
        return DataLoader(
            feats, batch_sampler=sampler,
            collate_fn=PairCollator(self.pad_id, self.cfg.pad_to_multiple_of),
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.cfg.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation, self.cfg.eval_batch_size, train=False)
