"""A regression run gets what a classification run gets: exact SIGTERM resume, and DDP validation that counts
every pair once and reports the metrics of the whole validation set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from korpair import api
from korpair.inference import Predictor
from tools.sample_corpus import generate_pair_task

TINY = ["model.from_scratch=true", "model.vocab_size=1000", "model.hidden_size=32", "model.num_layers=1",
        "model.num_heads=2", "model.intermediate_size=64", "trainer.progress_bar=false", "optim.lr=2e-3",
        "trainer.log_every_n_steps=4"]
# Each generated relation gets a score band; the noise makes the scores real numbers, not three classes.
BANDS = {"entailment": 4.5, "neutral": 2.5, "contradiction": 0.5}


def write_scores(folder, n: int, n_train: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    rows = generate_pair_task(n, seed=seed)
    out = []
    for name, part in (("train", rows[:n_train]), ("validation", rows[n_train:])):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"sentence1": r["premise"], "sentence2": r["hypothesis"],
                                            "score": round(BANDS[r["label"]] + float(rng.uniform(-0.5, 0.5)), 2)},
                                           ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
        out.append(path)
    return [f"corpus.train_file={out[0]}", f"corpus.validation_file={out[1]}", "corpus.score_range=[0, 5]"]


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    data = [*write_scores(tmp_path, 1200, 960, seed=5), *TINY, "trainer.max_epochs=10",
            f"data.cache_dir={tmp_path / 'cache'}"]
    baseline = api.train(None, [*data, f"trainer.output_dir={tmp_path / 'a'}"])
    assert baseline.metrics["val_spearman"] > 0.5, "the tiny model learns the score bands"

    run = tmp_path / "b"
    cmd = [sys.executable, "-m", "korpair", "train", "--set", f"trainer.output_dir={run}"]
    for item in data:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not (run / "logs" / "metrics.csv").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    stopped_at = torch.load(run / "checkpoints" / "interrupted.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped_at < baseline.metrics["global_step"]

    resumed = api.train(resume=run)
    assert resumed.metrics["global_step"] == baseline.metrics["global_step"]
    for key in ("val_loss", "val_spearman", "val_pearson", "val_mse", "val_mae"):
        assert resumed.metrics[key] == pytest.approx(baseline.metrics[key], abs=1e-4), key


@pytest.mark.slow
def test_two_process_ddp_scores_the_whole_validation_set(tmp_path):
    data = write_scores(tmp_path, 600, 450, seed=11)  # 150 validation pairs: not a multiple of 2 x 64
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "korpair", "train", "sample", "-o", str(out), "--accelerator", "cpu",
           "--devices", "2", "--strategy", "ddp", "--epochs", "2", "--set", "trainer.precision=32"]
    for item in (*data, *TINY, f"data.cache_dir={tmp_path / 'cache'}"):
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["val_examples"] == 150, "every validation pair counted once"

    # The synced metrics are those of the whole validation set, as one process computes them from the model.
    rows = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    # the validation metrics are the model's own scores', before the affine calibration fitted after training
    predictor = Predictor.from_pretrained(out / "model", device="cpu", calibrated=False)
    assert predictor.task == "regression"
    scores = predictor.predict_scores([(r["sentence1"], r["sentence2"]) for r in rows])
    gold = np.array([r["score"] for r in rows])
    assert metrics["val_mse"] == pytest.approx(float(np.mean((scores - gold) ** 2)), rel=1e-3)
    assert metrics["val_mae"] == pytest.approx(float(np.mean(np.abs(scores - gold))), rel=1e-3)
    assert metrics["val_pearson"] == pytest.approx(pearsonr(scores, gold).statistic, abs=1e-3)
    assert metrics["val_spearman"] == pytest.approx(spearmanr(scores, gold).statistic, abs=1e-3)
