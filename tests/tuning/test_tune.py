"""korpair tune: a real Optuna study in SQLite whose trials are korpair runs; pruning, a SIGTERM and a kill -9
mid-trial, failing trials, and a best config that trains the best trial again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import optuna
import pytest
import yaml
from conftest import write_pair_task_files

from korpair import api
from korpair.errors import ConfigError, OutputExistsError

TINY = ["model.from_scratch=true", "model.vocab_size=500", "model.hidden_size=32", "model.num_layers=1",
        "model.num_heads=2", "model.intermediate_size=64", "trainer.max_epochs=2", "trainer.seed=3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[str]:
    return [*write_pair_task_files(tmp_path_factory.mktemp("tune-data"), 300, 240, seed=4), *TINY]


def load(folder: Path) -> optuna.Study:
    where = json.loads((folder / "study.json").read_text())
    return optuna.load_study(study_name=where["study_name"], storage=where["storage"])


def space_file(tmp_path: Path, params: dict, **pruner) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"params": params, **({"pruner": pruner} if pruner else {})}))
    return path


def start(args: list[str], folder: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "korpair", "tune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_sample_study_prunes_survives_sigterm_and_its_best_yaml_trains_the_best_trial_again(tmp_path, monkeypatch):
    """The issue's acceptance run: `korpair tune sample --trials 6 --storage sqlite:///...` on 2 cores."""
    folder, db = tmp_path / "tune", f"sqlite:///{tmp_path / 'study.db'}"
    env = {"KORPAIR_HOME": str(tmp_path / "home")}
    # the default space, with pruning from the second trial and the first validation on: which trials the
    # median pruner stops depends on where the signal lands, and this leaves it room to stop one whatever
    from korpair.config import load_config
    from korpair.tuning.space import default_space

    space = space_file(tmp_path, default_space(load_config("sample")).params, startup_trials=1, warmup_validations=0)
    args = ["sample", "--trials", "6", "--storage", db, "-o", str(folder), "--set", "trainer.max_epochs=4",
            "--space", str(space)]
    proc = start(args, folder, env)
    wait_for(folder / "trials" / "trial-0002" / "logs" / "metrics.csv", proc)  # trial 2 is training
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "--resume" in output and "trial 2" in output, output

    before = {t.number: (t.state, t.value, t.params) for t in load(folder).trials}
    assert sorted(before) == [0, 1, 2] and before[2][0] == optuna.trial.TrialState.FAIL
    assert all(before[n][0] in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for n in (0, 1))

    monkeypatch.setenv("KORPAIR_HOME", env["KORPAIR_HOME"])
    result = api.tune("sample", trials=6, output_dir=folder, resume=True)
    study = load(folder)
    after = {t.number: t for t in study.trials}
    for n in (0, 1):  # nothing lost: the trials finished before the signal are as they were
        assert (after[n].state, after[n].value, after[n].params) == before[n]
    retry = after[3]
    assert retry.user_attrs["retry_of"] == 2 and retry.params == before[2][2], "trial 2 ran again as trial 3"
    assert not (folder / "trials" / "trial-0002").exists() and (folder / "trials" / "trial-0003").is_dir()
    finished = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(finished) == 6 and len(study.trials) == 7, "six finished, none twice, the interrupted one apart"
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials), "a bad trial was pruned"

    # Only the best trial keeps a model; its config trains it again to the same number (same seed).
    kept = sorted(p.parent.name for p in (folder / "trials").glob("trial-*/model"))
    assert kept == [f"trial-{result.best_trial:04d}"]
    assert not list((folder / "trials").glob("trial-*/checkpoints/*.ckpt"))
    assert (folder / "best-model" / "config.json").is_file() and (folder / "search.png").stat().st_size > 10_000
    summary = json.loads((folder / "tune.json").read_text())
    assert summary["best_trial"] == study.best_trial.number and summary["best_value"] == study.best_value
    again = api.train(result.best_config, [f"data.cache_dir={tmp_path / 'home' / 'features'}"])
    assert round(again.metrics[result.monitor], 4) == round(result.best_value, 4)


def test_a_study_killed_mid_trial_goes_on_without_losing_or_repeating_trials(data, tmp_path):
    folder = tmp_path / "killed"
    space = space_file(tmp_path, {"optim.lr": {"low": 1e-4, "high": 1e-3, "log": True}})
    args = ["--trials", "3", "-o", str(folder), "--space", str(space)]
    for item in [*data, "trainer.max_epochs=20"]:  # trial 1 still training when it is killed
        args += ["--set", item]
    proc = start(args, folder, {})
    wait_for(folder / "trials" / "trial-0001" / "logs" / "metrics.csv", proc)
    proc.kill()  # kill -9: no handler runs, trial 1 stays "running" in the study
    proc.wait(timeout=60)
    assert load(folder).trials[1].state == optuna.trial.TrialState.RUNNING

    with pytest.raises(OutputExistsError, match="resume"):
        api.tune(None, data, trials=3, output_dir=folder)
    api.tune(None, data, trials=3, output_dir=folder, resume=True)
    trials = load(folder).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    assert trials[0].value is not None and "error" not in trials[1].user_attrs


class _OutOfMemoryIn(L.Callback):
    """Fails the run whose output folder is ``name``, as a CUDA out-of-memory error would."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if Path(trainer.default_root_dir).name == self.name:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_failing_trial_is_recorded_and_the_study_goes_on(data, tmp_path):
    folder = tmp_path / "oom"
    space = space_file(tmp_path, {"data.batch_size": [16, 32]})
    result = api.tune(None, data, trials=2, output_dir=folder, space=space, callbacks=[_OutOfMemoryIn("trial-0000")])
    trials = load(folder).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[0].user_attrs["error"].startswith("CUDA out of memory")
    assert result.best_trial == 1 and result.states == {"fail": 1, "complete": 1}
    assert json.loads((folder / "tune.json").read_text())["trials"][0]["error"].startswith("CUDA out of memory")


@pytest.mark.parametrize("params, message", [
    ({"optim.learning_rate": [1e-5]}, r"params.optim.learning_rate: .*not a value of this config key"),
    ({"data.batch_size": [0, 16]}, r"params.data.batch_size: 0 is not a value"),
    ({"optim.lr": {"low": 0, "high": 1e-3, "log": True}}, r"params.optim.lr: a log range needs low > 0"),
    ({"optim.lr": {"low": 1e-3, "high": 1e-5}}, r"params.optim.lr: needs numbers low < high"),
    ({"optim.lr": "1e-5"}, r"params.optim.lr: give a list of choices or a range"),
    ({"trainer.seed": [1, 2]}, r"params.trainer.seed: .*not searched"),
])
def test_a_bad_search_space_is_named_by_file_and_key_before_anything_runs(data, tmp_path, params, message):
    space = space_file(tmp_path, params)
    with pytest.raises(ConfigError, match=rf"{space}: {message}"):
        api.tune(None, data, trials=2, output_dir=tmp_path / "t", space=space)
    assert not (tmp_path / "t").exists(), "nothing written"


def test_a_space_file_that_is_not_one(data, tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, message in (("params: [a, b]", "a mapping with 'params'"), ("params: {optim.lr: [1]}\nsampler: tpe",
                          "unknown key"), ("params: {a: [1, 1]}", "each once"), ("{: x", "not valid YAML")):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            api.tune(None, data, trials=1, output_dir=tmp_path / "t", space=bad)


def test_the_default_spaces_fit_the_config():
    from korpair.config import TrainConfig
    from korpair.tuning.space import as_override, load_space

    for cfg in (TrainConfig(), TrainConfig.from_file(None, ["model.from_scratch=true"])):
        space = load_space(None, cfg)
        assert ("model.dropout" in space.params) == cfg.model.from_scratch
        for key, spec in space.params.items():
            section, name = key.split(".")
            for value in spec if isinstance(spec, list) else [spec["low"], spec["high"]]:
                assert getattr(getattr(cfg.with_overrides([as_override(key, value)]), section), name) == value
    assert as_override("optim.lr", 1e-05) == "optim.lr=1.0e-05"


def test_a_relative_sqlite_storage_is_kept_as_an_absolute_path(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = space_file(tmp_path, {"data.batch_size": [32]})
    result = api.tune(None, data, trials=1, output_dir=tmp_path / "rel", space=space, storage="sqlite:///my.db")
    assert result.storage == f"sqlite:///{tmp_path / 'my.db'}" and (tmp_path / "my.db").is_file()
    monkeypatch.chdir(tmp_path / "rel")  # resumed from elsewhere, the same study
    again = api.tune(None, data, trials=2, output_dir=tmp_path / "rel", resume=True)
    assert again.states == {"complete": 2}


def test_resume_needs_a_study(tmp_path):
    with pytest.raises(ConfigError, match="holds no study to resume"):
        api.tune("sample", trials=1, output_dir=tmp_path / "none", resume=True)
