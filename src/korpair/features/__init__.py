"""Pairs -> tensors: encode (``encode``), cache on disk (``cache``), group and pad into batches (``batches``)."""

from korpair.features.batches import LengthGroupedBatchSampler, PairCollator, PairDataModule
from korpair.features.cache import default_cache_dir, encode_pairs_cached, tokenizer_fingerprint
from korpair.features.encode import EncodedPairs, encode_pairs

__all__ = ["EncodedPairs", "LengthGroupedBatchSampler", "PairCollator", "PairDataModule", "default_cache_dir",
           "encode_pairs", "encode_pairs_cached", "tokenizer_fingerprint"]
