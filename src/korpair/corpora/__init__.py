"""Raw sentence pairs in: files read and validated (``readers``), built-in corpora fetched
(``builtin``), and a corpus config resolved into its splits (``splits``)."""

from korpair.corpora.builtin import (
    BUILTIN_CORPORA,
    default_data_dir,
    embedded_corpus_dir,
    fetch_corpus,
    sample_corpus_dir,
    sha256_file,
)
from korpair.corpora.readers import FORMATS, iter_pairs, read_pairs
from korpair.corpora.splits import PairStream, Splits, load_splits, read_split, resolve_files, stream_split

__all__ = [
    "BUILTIN_CORPORA", "FORMATS", "PairStream", "Splits", "default_data_dir", "embedded_corpus_dir", "fetch_corpus",
    "iter_pairs", "load_splits", "read_pairs", "read_split", "resolve_files", "sample_corpus_dir", "sha256_file",
    "stream_split",
]
