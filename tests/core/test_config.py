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

    root = Path(__file__).resolve().parents[2]
    assert reference() in (root / "README.md").read_text(encoding="utf-8"), \
        "README config table is stale: run python -m tools.config_reference and paste its output"


def test_precision_32_may_be_written_as_a_number():
    assert TrainConfig.from_file(None, ["trainer.precision=32"]).trainer.precision == "32"
    with pytest.raises(ConfigError, match=r"trainer\.precision"):
        TrainConfig.from_file(None, ["trainer.precision=16"])


# --- keys that imply others, the same from every entry point ----------------------------------------------------


def test_a_model_name_means_fine_tuning_it_from_every_entry_point():
    sample = load_config("sample")
    assert sample.model.from_scratch, "the sample preset builds its model from scratch"
    through = {
        "load_config": load_config("sample", ["model.name_or_path=klue/bert-base"]),
        "from_file": TrainConfig.from_file(presets()["sample"], ["model.name_or_path=klue/bert-base"]),
        "with_overrides": sample.with_overrides(["model.name_or_path=klue/bert-base"]),
        "replace": sample.replace(model={"name_or_path": "klue/bert-base"}),
    }
    for entry, cfg in through.items():
        assert (cfg.model.name_or_path, cfg.model.from_scratch) == ("klue/bert-base", False), entry
        assert cfg.model.vocab_size == sample.model.vocab_size, f"{entry}: the other model keys stay"


def test_own_training_files_mean_a_files_corpus():
    files = ["corpus.train_file=train.tsv", "corpus.validation_file=dev.tsv"]
    assert load_config("kcbert-klue-nli", files).corpus.name == "files", "the preset's klue-nli is replaced"
    assert load_config("sample", ["corpus.name=sample", *files]).corpus.name == "files", "'sample' too"
    assert TrainConfig.from_dict({"corpus": {"train_file": "t.tsv", "validation_file": "d.tsv"}}).corpus.name == "files"
    assert TrainConfig().replace(corpus={"train_file": "t.tsv", "validation_file": "d.tsv"}).corpus.name == "files"
    # a built-in corpus named with the files keeps them as replacements of its own splits
    kept = load_config(None, ["corpus.name=klue-nli", "corpus.validation_file=dev.tsv"])
    assert kept.corpus.name == "klue-nli" and str(kept.corpus.validation_file) == "dev.tsv"


def test_contradictions_name_the_keys():
    with pytest.raises(ConfigError, match=r"model\.name_or_path='x' and model\.from_scratch=true contradict"):
        load_config("sample", ["model.name_or_path=x", "model.from_scratch=true"])
    with pytest.raises(ConfigError, match=r"model\.name_or_path='x' and model\.from_scratch=true contradict"):
        TrainConfig().replace(model={"name_or_path": "x", "from_scratch": True})
    with pytest.raises(ConfigError, match=r"corpus\.name='files' .*needs corpus\.validation_file$"):
        load_config("sample", ["corpus.train_file=train.tsv"])
    with pytest.raises(ConfigError, match=r"needs corpus\.train_file and corpus\.validation_file"):
        TrainConfig.from_file(None, ["corpus.name=files"])
    # a saved run config lists every key: from_scratch with the default model name is no contradiction
    assert TrainConfig.from_dict(load_config("sample").to_dict()).model.from_scratch


def test_text_keys_keep_what_was_typed():
    cfg = TrainConfig.from_file(None, ["model.name_or_path=yes", "corpus.train_file=2024", "corpus.validation_file=~",
                                       "corpus.name=klue-nli", "corpus.encoding='cp949'", "model.revision=null"])
    assert cfg.model.name_or_path == "yes" and str(cfg.corpus.train_file) == "2024"
    assert cfg.corpus.validation_file is None and cfg.model.revision is None, "YAML's null clears an optional key"
    assert cfg.corpus.encoding == "cp949", "a quoted value is the text inside the quotes"


def test_unknown_key_suggests_the_near_one():
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key; did you mean optim\.lr\?"):
        TrainConfig.from_file(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"optimm: unknown key; the sections are corpus, model, data, optim, trainer"):
        TrainConfig.from_file(None, ["optimm.lr=1"])
