"""Shared fixtures: tiny models built offline, small corpora written on the fly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests never touch the user's cache or the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

KOREAN_TEXTS = [
    "민수는 어제 공원에서 자전거를 탔다", "지영은 집에 있지 않았다", "비가 많이 온다", "날씨가 맑다",
    "할머니가 시장에서 사과를 샀다", "아이들이 운동장에서 축구를 한다", "회의는 오후 세 시에 끝났다",
    "선생님은 학생들에게 숙제를 내 주셨다", "가게 문이 닫혀 있었다", "커피가 너무 뜨겁다",
]


def build_tiny_classifier(folder: Path, labels=("entailment", "neutral", "contradiction"), seed: int = 0) -> Path:
    """A random 2-layer BERT with a WordPiece vocabulary trained on a few Korean sentences."""
    import torch

    from korpair.config import ModelConfig
    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer
    from korpair.types import LabelMap

    torch.manual_seed(seed)
    cfg = ModelConfig(from_scratch=True, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=64)
    tokenizer, model = build_model_and_tokenizer(cfg, LabelMap(tuple(labels)), KOREAN_TEXTS * 5, 64)
    return export_model(model, tokenizer, folder)


def build_tiny_regressor(folder: Path, score_range=(0, 5), seed: int = 0) -> Path:
    """As ``build_tiny_classifier``, with one output: a regression model (a score) on ``score_range``."""
    import torch

    from korpair.config import ModelConfig
    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer
    from korpair.types import ScoreRange

    torch.manual_seed(seed)
    cfg = ModelConfig(from_scratch=True, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=64)
    target = ScoreRange(*score_range)
    tokenizer, model = build_model_and_tokenizer(cfg, target, KOREAN_TEXTS * 5, 64)
    # An untrained head gives every pair about 0.0; a larger one around the middle tells pairs apart.
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.fill_((target.low + target.high) / 2)
    return export_model(model, tokenizer, folder, target=target)


CHROMIUM = Path("/usr/bin/chromium")
# Root user in a closed network: no sandbox, no GPU, and no background calls home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright, for the pages korpair serves and writes.

    Per module, not per session: Playwright's sync API keeps an event loop running in this thread while it is
    open, and the tests that call ``asyncio.run`` after it would fail."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium with "
                    "`apt-get update && apt-get install -y chromium` (CI does this before the tests)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def tiny_regressor_dir(tmp_path_factory) -> Path:
    """Untrained but valid regression model folder (score range 0 to 5)."""
    return build_tiny_regressor(tmp_path_factory.mktemp("tiny-sts") / "model")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Untrained but valid model folder (fast): for API, serving and I/O tests."""
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_electra_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A random 1-layer ELECTRA classifier with the tiny model's tokenizer: a model that packed inference does not
    know, so exporters give it padded batches."""
    from transformers import AutoTokenizer, ElectraConfig, ElectraForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    labels = ("entailment", "neutral", "contradiction")
    electra = ElectraForSequenceClassification(ElectraConfig(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=3, id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}))
    folder = tmp_path_factory.mktemp("electra") / "model"
    electra.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A short real training run on the shipped sample corpus (session-wide, ~half a minute)."""
    from korpair import api

    out = tmp_path_factory.mktemp("run")
    return api.train("sample", [f"trainer.output_dir={out}", f"data.cache_dir={out / 'cache'}",
                                "model.hidden_size=128", "model.num_layers=2", "model.intermediate_size=512",
                                "trainer.max_epochs=2", "trainer.progress_bar=false"])


TINY = ["model.from_scratch=true", "model.vocab_size=2000", "model.hidden_size=64", "model.num_layers=2",
        "model.num_heads=2", "model.intermediate_size=128", "trainer.progress_bar=false"]


@pytest.fixture(scope="session")
def pair_task_files(tmp_path_factory):
    """A generated task where the label is a function of the pair: same / negated / unrelated sentence."""
    from tools.sample_corpus import generate_pair_task

    folder = tmp_path_factory.mktemp("pairtask")
    rows = generate_pair_task(3000, seed=3)
    for name, part in (("train", rows[:2400]), ("validation", rows[2400:])):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return folder


def write_pair_task_files(folder: Path, n: int, n_train: int, seed: int) -> list[str]:
    """Write a generated pair task as train/validation JSONL in ``folder``; return the corpus/cache overrides."""
    from tools.sample_corpus import generate_pair_task

    rows = generate_pair_task(n, seed=seed)
    for name, part in (("train", rows[:n_train]), ("validation", rows[n_train:])):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return ["corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
            f"corpus.validation_file={folder / 'validation.jsonl'}", f"data.cache_dir={folder / 'cache'}"]


def task_overrides(folder: Path, out: Path) -> list[str]:
    return ["corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
            f"corpus.validation_file={folder / 'validation.jsonl'}", f"trainer.output_dir={out}",
            f"data.cache_dir={out.parent / 'cache'}", *TINY]


LEARN = ["trainer.max_epochs=5", "optim.lr=5e-4", "optim.warmup_ratio=0.1", "model.dropout=0.0"]


@pytest.fixture(scope="session")
def learned_run(pair_task_files, tmp_path_factory):
    """A tiny model that really learns a pair function (>= 0.90 validation accuracy), default precision."""
    from korpair import api

    return api.train(None, task_overrides(pair_task_files, tmp_path_factory.mktemp("learned") / "run") + LEARN)


@pytest.fixture
def write_jsonl(tmp_path):
    def write(rows, name="data.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return path

    return write
