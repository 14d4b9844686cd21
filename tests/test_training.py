"""The training loop: schedules really apply, the model really learns, outputs are complete."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from korpair import api
from korpair.errors import OutputExistsError
from korpair.inference import Predictor
from korpair.sample import generate_pair_task

TINY = ["model.from_scratch=true", "model.vocab_size=2000", "model.hidden_size=64", "model.num_layers=2",
        "model.num_heads=2", "model.intermediate_size=128", "trainer.progress_bar=false"]


@pytest.fixture(scope="module")
def pair_task_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairtask")
    rows = generate_pair_task(3000, seed=3)
    for name, part in (("train", rows[:2400]), ("validation", rows[2400:])):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return folder


def task_overrides(folder: Path, out: Path) -> list[str]:
    return ["corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
            f"corpus.validation_file={folder / 'validation.jsonl'}", f"trainer.output_dir={out}",
            f"data.cache_dir={out.parent / 'cache'}", *TINY]


def logged(out: Path, column_prefix: str) -> dict[int, float]:
    with open(out / "logs" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    col = next(c for c in rows[0] if c.startswith(column_prefix))
    return {int(r["step"]): float(r[col]) for r in rows if r.get(col)}


def test_linear_warmup_then_decay_really_applies(pair_task_files, tmp_path):
    out = tmp_path / "run"
    api.train(None, task_overrides(pair_task_files, out) + [
        "trainer.max_steps=30", "trainer.log_every_n_steps=1", "optim.lr=1e-3", "optim.warmup_steps=6",
        "optim.scheduler=linear"])
    lrs = logged(out, "lr-AdamW")
    assert len(lrs) >= 25
    for step, lr in lrs.items():
        expected = 1e-3 * (step / 6 if step < 6 else max(0.0, (30 - step) / (30 - 6)))
        assert lr == pytest.approx(expected, rel=1e-6, abs=1e-12), step


def test_recipe_exponential_decay_per_epoch(pair_task_files, tmp_path):
    out = tmp_path / "run"
    api.train(None, task_overrides(pair_task_files, out) + [
        "trainer.max_epochs=3", "trainer.log_every_n_steps=5", "optim.optimizer=adam", "optim.lr=1e-3",
        "optim.scheduler=exponential", "optim.gamma=0.5"])
    lrs = logged(out, "lr-Adam")
    steps_per_epoch = -(-2400 // 32)
    for step, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * 0.5 ** (step // steps_per_epoch), rel=1e-6), step
    assert len(set(lrs.values())) == 3, "the LR must change each epoch (ratsnlp's stayed constant)"


def test_tiny_model_learns_a_pair_function(pair_task_files, tmp_path):
    """Label = f(pair): same sentence / negated / unrelated. Proof that the loop learns."""
    out = tmp_path / "run"
    result = api.train(None, task_overrides(pair_task_files, out) + [
        "trainer.max_epochs=5", "optim.lr=5e-4", "optim.warmup_ratio=0.1", "model.dropout=0.0"])
    assert result.metrics["val_accuracy"] >= 0.90, result.metrics
    assert result.metrics["global_step"] <= 5 * 75


def test_outputs_are_a_plain_hf_folder(trained_run):
    out, model_dir = trained_run.output_dir, trained_run.model_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "korpair_train.yaml"):
        assert (model_dir / name).is_file(), name
    assert not list(model_dir.glob("*.bin")), "weights are safetensors only"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    for name in ("metrics.json", "korpair_train.yaml", "training_curves.png", "logs/metrics.csv"):
        assert (out / name).is_file(), name
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["validation_pairs"] > 0


def test_save_load_identical_and_transformers_pipeline_agrees(trained_run):
    from transformers import pipeline

    from korpair.corpora import CorpusConfig, read_split

    pairs = read_split(CorpusConfig(name="sample"), "test")[:40]
    a = Predictor.from_pretrained(trained_run.model_dir).predict(pairs)
    b = Predictor.from_pretrained(trained_run.model_dir).predict(pairs, batch_size=7)
    assert [p.label for p in a] == [p.label for p in b]
    for x, y in zip(a, b):
        for name in x.scores:
            assert x.scores[name] == pytest.approx(y.scores[name], abs=1e-5)

    pipe = pipeline("text-classification", model=str(trained_run.model_dir), device="cpu")
    outputs = pipe([{"text": p.premise, "text_pair": p.hypothesis} for p in pairs], top_k=None)
    for ours, theirs in zip(a, outputs):
        best = max(theirs, key=lambda d: d["score"])
        assert best["label"] == ours.label
        assert best["score"] == pytest.approx(ours.scores[ours.label], abs=1e-4)


def test_best_checkpoint_weights_are_exported(trained_run):
    """The exported folder holds the best checkpoint, not the last epoch's weights."""
    from safetensors.torch import load_file

    best = torch.load(trained_run.output_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    exported = load_file(str(trained_run.model_dir / "model.safetensors"))
    for key, value in exported.items():
        assert torch.equal(best[f"model.{key}"], value), key


def test_output_folder_is_not_mixed(trained_run):
    with pytest.raises(OutputExistsError, match="not empty"):
        api.train("sample", [f"trainer.output_dir={trained_run.output_dir}"])
