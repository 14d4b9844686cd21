"""Config files, overrides and their errors."""

from __future__ import annotations

import pytest

from korpair.config import TrainConfig, load_config, presets
from korpair.errors import ConfigError


def test_defaults_follow_the_recipe():
    cfg = TrainConfig()
    assert cfg.model.name_or_path == "beomi/kcbert-base"
    assert cfg.data.max_seq_length == 64 and cfg.data.batch_size == 32


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1.0e-4\ntrainer:\n  max_epochs: 2\n")
    cfg = TrainConfig.from_file(path, ["trainer.max_epochs=4", "data.group_by_length=false"])
    assert cfg.optim.lr == 1e-4 and cfg.trainer.max_epochs == 4 and cfg.data.group_by_length is False


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  learning_rate: 1.0e-4\n")
    with pytest.raises(ConfigError, match=r"(?s)c\.yaml: 1 invalid.*optim\.learning_rate: unknown key"):
        TrainConfig.from_file(path)


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"data\.max_seq_length"):
        TrainConfig.from_file(None, ["data.max_seq_length=-3"])
    with pytest.raises(ConfigError, match=r"trainer\.precision"):
        TrainConfig.from_file(None, ["trainer.precision=fp8"])
    with pytest.raises(ConfigError, match="divisible"):
        TrainConfig.from_file(None, ["model.hidden_size=100", "model.num_heads=3"])


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: [1\ntrainer: {\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        TrainConfig.from_file(path)


def test_presets_are_valid_and_round_trip(tmp_path):
    assert {"sample", "kcbert-klue-nli", "book-recipe"} <= set(presets())
    for name in presets():
        cfg = load_config(name)
        saved = tmp_path / f"{name}.yaml"
        saved.write_text(cfg.to_yaml())
        assert TrainConfig.from_file(saved) == cfg
    book = load_config("book-recipe")
    assert book.optim.optimizer == "adam" and book.optim.scheduler == "exponential"


def test_unknown_preset():
    with pytest.raises(ConfigError, match="no such config file or preset"):
        load_config("nope")


def test_readme_config_reference_is_current():
    from pathlib import Path

    from tools.config_reference import reference

    root = Path(__file__).resolve().parents[1]
    assert reference() in (root / "README.md").read_text(encoding="utf-8"), \
        "README config table is stale: run python -m tools.config_reference and paste its output"


def test_precision_32_may_be_written_as_a_number():
    assert TrainConfig.from_file(None, ["trainer.precision=32"]).trainer.precision == "32"
    with pytest.raises(ConfigError, match=r"trainer\.precision"):
        TrainConfig.from_file(None, ["trainer.precision=16"])
