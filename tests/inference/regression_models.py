"""Tiny regression (similarity) model folders for the inference tests, built offline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from conftest import KOREAN_TEXTS, SHARED_DATA

from korpair.types import Pair, ScoreRange

KORSTS = SHARED_DATA / "korsts"
STS = ScoreRange(0, 5)


def read_korsts(split: str, limit: int | None = None) -> list[Pair]:
    """KorSTS pairs with their 0-5 scores (the caller skips when ../shared/data is absent)."""
    from korpair.corpora import read_pairs

    return read_pairs(KORSTS / f"sts-{split}.tsv", fmt="tsv", text_a_column="sentence1",
                      text_b_column="sentence2", label_column="score", scores=STS, drop_empty=True, limit=limit)


def build_tiny_regressor(folder: Path, texts: Sequence[str] = tuple(KOREAN_TEXTS) * 5, *, seed: int = 0,
                         train_pairs: Sequence[Pair] = (), epochs: int = 2, score_range: ScoreRange = STS,
                         vocab_size: int = 300, hidden_size: int = 32) -> Path:
    """A 2-layer BERT with one output (problem_type regression), its WordPiece vocabulary trained on
    ``texts``; with ``train_pairs``, trained on them for a few epochs (MSE) so that its scores mean
    something. Saved as korpair saves a regression model (section task pair-regression, its range)."""
    import torch

    from korpair.config import ModelConfig
    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer

    torch.manual_seed(seed)
    cfg = ModelConfig(from_scratch=True, vocab_size=vocab_size, hidden_size=hidden_size, num_layers=2,
                      num_heads=2, intermediate_size=2 * hidden_size, dropout=0.0)
    tokenizer, model = build_model_and_tokenizer(cfg, score_range, list(texts), 64)
    if train_pairs:
        _train(model, tokenizer, list(train_pairs), epochs)
    return export_model(model.eval(), tokenizer, folder, target=score_range)


def _train(model, tokenizer, pairs: list[Pair], epochs: int, batch_size: int = 32, lr: float = 1e-3) -> None:
    import torch

    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only contend on a shared machine (70x slower here)
    try:
        _epochs(model, tokenizer, pairs, epochs, batch_size, optim, generator)
    finally:
        torch.set_num_threads(threads)
        model.eval()


def _epochs(model, tokenizer, pairs, epochs, batch_size, optim, generator) -> None:
    import torch

    for _ in range(epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            batch = [pairs[i] for i in order[start : start + batch_size]]
            inputs = tokenizer([p.premise for p in batch], [p.hypothesis for p in batch], padding=True,
                               truncation=True, max_length=64, return_tensors="pt")
            labels = torch.tensor([float(p.label) for p in batch])
            loss = model(**inputs, labels=labels).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
