"""Experiment trackers for real: MLflow runs read back through MLflow's client, W&B offline runs through the
records W&B wrote (its own protobuf schema), and a resumed run going on in the same tracker runs."""

from __future__ import annotations

import glob
import json
import os
import signal
import struct
from pathlib import Path

import lightning as L
import pytest
from conftest import write_pair_task_files

from korpair import api
from korpair.errors import ConfigError, TrainingInterrupted

TINY = ["model.from_scratch=true", "model.vocab_size=500", "model.hidden_size=32", "model.num_layers=1",
        "model.num_heads=2", "model.intermediate_size=64", "trainer.progress_bar=false", "trainer.max_epochs=2",
        "trainer.log_every_n_steps=2", "optim.lr=5e-4", "trainer.seed=3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[str]:
    return [*write_pair_task_files(tmp_path_factory.mktemp("trackers-data"), 300, 240, seed=2), *TINY]


def mlflow_run(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    [run] = client.search_runs([found.experiment_id])
    return client, run


def test_mlflow_run_holds_config_curves_final_metrics_and_model(data, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "nli-from-env")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # MLflow keeps artifacts in ./mlruns by default
    out = tmp_path / "run-a"
    result = api.train(None, [*data, f"trainer.output_dir={out}", "trainer.loggers=[csv,mlflow]",
                              f"trainer.tracking_uri={uri}"])

    client, run = mlflow_run(uri, "nli-from-env")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run-a", "named after the output folder"
    params = run.data.params
    assert params["optim/lr"] == "0.0005" and params["model/hidden_size"] == "32"
    assert params["corpus/train_file"].endswith("train.jsonl")
    for key in ("val_accuracy", "val_loss"):
        assert run.data.metrics[f"best/{key}"] == pytest.approx(result.metrics[key], rel=1e-6)
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert len(history) == 2, "one point per validation (two epochs), none for the best model's re-validation"
    assert client.get_metric_history(run.info.run_id, "train_loss"), "the training curve"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/config.json", "model/model.safetensors"} <= artifacts
    saved = json.loads((out / "logs" / "trackers.json").read_text())
    assert saved["mlflow_run_id"] == run.info.run_id
    assert not (out / "logs" / "tensorboard").exists(), "tensorboard was not asked for"
    assert (out / "logs" / "metrics.csv").exists() and (out / "training_curves.png").exists(), "csv always kept"


class _StopAt(L.Callback):
    """SIGTERM to this process after ``step`` optimizer steps, as a scheduler's preemption would send it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_resumed_run_goes_on_in_the_same_mlflow_run(data, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run-b"
    with pytest.raises(TrainingInterrupted):
        api.train(None, [*data, f"trainer.output_dir={out}", "trainer.loggers=[mlflow]",
                         f"trainer.tracking_uri={uri}"], callbacks=[_StopAt(10)])
    client, run = mlflow_run(uri, "korpair")
    assert run.info.status == "KILLED"
    stopped = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]

    result = api.train(resume=out)
    client, after = mlflow_run(uri, "korpair")  # still one run in the experiment
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert steps[:len(stopped)] == stopped and max(steps) > max(stopped) and len(steps) == len(set(steps))
    assert after.data.metrics["best/val_accuracy"] == pytest.approx(result.metrics["val_accuracy"], rel=1e-6)


def wandb_records(run_dir: Path) -> list:
    """The records of a W&B run file (``run-ID.wandb``): W&B's block log of its own protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2

    [path] = glob.glob(str(run_dir / "run-*.wandb"))
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "a W&B run file"
    block, pos, records, partial = 32768, 7, [], b""
    while pos < len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        partial = chunk if kind in (1, 2) else partial + chunk
        if kind in (1, 4):  # full, or the last piece of a record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            records.append(record)
    return records


def test_wandb_offline_run_holds_config_final_metrics_and_model(data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "run-c"
    result = api.train(None, [*data, f"trainer.output_dir={out}", "trainer.loggers=[wandb]",
                              "trainer.experiment=korpair-tests", "trainer.run_name=tiny-nli"])

    saved = json.loads((out / "logs" / "trackers.json").read_text())
    [run_dir] = (tmp_path / "wandb").glob(f"offline-run-*-{saved['wandb_run_id']}")
    records = wandb_records(run_dir)
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.display_name, run.run_id) == ("korpair-tests", "tiny-nli", saved["wandb_run_id"])
    config = {item.key: json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for item in r.config.update}
    assert config["optim"]["lr"] == 5e-4 and config["model"]["num_layers"] == 1
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in r.summary.update})
    assert summary["best/val_accuracy"] == pytest.approx(result.metrics["val_accuracy"], rel=1e-6)
    assert any(r.WhichOneof("record_type") == "history" for r in records), "the training curve"
    [artifact] = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.type == "model"
    assert {"config.json", "model.safetensors"} <= {e.path for e in artifact.manifest.contents}
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0], "closed cleanly"


def test_a_tracker_that_is_not_installed_is_named_before_the_run_starts(data, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    out = tmp_path / "run-d"
    with pytest.raises(ConfigError, match=r"trainer.loggers includes 'wandb'.*korpair\[trackers\]"):
        api.train(None, [*data, f"trainer.output_dir={out}", "trainer.loggers=[csv,wandb]"])
    assert not out.exists() or not any(out.iterdir()), "nothing written"


def test_each_tracker_is_named_once(data):
    with pytest.raises(ConfigError, match="trainer.loggers: names mlflow more than once"):
        api.train(None, [*data, "trainer.loggers=[mlflow,csv,mlflow]"])
