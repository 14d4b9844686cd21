"""Two-process DDP on CPU (gloo): one model folder, validation over the whole set exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tools.sample_corpus import generate_pair_task


def ddp_train_command(tmp_path, epochs: int, *settings: str) -> tuple[list[str], dict, list[dict]]:
    """``korpair train`` on 2 CPU processes (gloo) over a generated pair task; returns cmd, env, validation rows."""
    rows = generate_pair_task(600, seed=11)
    train, validation = rows[:450], rows[450:]  # 150 validation pairs: not a multiple of 2 x 64
    for name, part in (("train", train), ("validation", validation)):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    cmd = [sys.executable, "-m", "korpair", "train", "sample", "-o", str(tmp_path / "run"),
           "--train-file", str(tmp_path / "train.jsonl"), "--validation-file", str(tmp_path / "validation.jsonl"),
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--epochs", str(epochs)]
    for item in ("model.vocab_size=1000", "model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
                 "model.intermediate_size=64", "trainer.progress_bar=false", f"data.cache_dir={tmp_path / 'cache'}",
                 *settings):
        cmd += ["--set", item]
    return cmd, {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}, validation


def test_two_process_ddp_on_cpu(tmp_path):
    cmd, env, validation = ddp_train_command(tmp_path, 2, "data.eval_batch_size=64")
    out = tmp_path / "run"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["effective_batch_size"] == 64
    assert metrics["val_examples"] == len(validation), "every validation pair counted exactly once"
    # 450 pairs / 32 per batch = 15 batches; each rank steps 7 of them per epoch (even shards)
    assert metrics["global_step"] == 2 * 7
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("model")) == ["model"]
    assert (out / "model" / "model.safetensors").is_file()


def test_sigterm_stops_every_rank_after_the_same_batch(tmp_path):
    """SIGTERM to the main process: Lightning's child rank is signalled too, both stop together."""
    import signal
    import time

    import torch

    cmd, env, _ = ddp_train_command(tmp_path, 30, "trainer.log_every_n_steps=2")
    out = tmp_path / "run"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while not (out / "logs" / "metrics.csv").exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)  # a rank left waiting in a collective would hang here
    assert proc.returncode == 130, output[-3000:]
    state = torch.load(out / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert 0 < state["global_step"] < 30 * 7
    assert not (out / "model").exists()
