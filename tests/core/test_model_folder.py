"""The model-folder contract: config.json's korpair section, the tokenizer's max length, the model card,
0.1 folders, and evaluate() on the data a model records."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import KOREAN_TEXTS

from korpair import api
from korpair.config import RUN_CONFIG_NAME, ModelConfig, TrainConfig
from korpair.errors import CorpusError, ModelFolderError
from korpair.inference import Predictor
from korpair.model_card import HUB_DATASETS, model_card
from korpair.model_folder import (
    FORMAT_VERSION,
    build_section,
    corpus_config,
    read_section,
    trained_max_length,
)
from korpair.types import NLI_LABELS

LABELS = ("contradiction", "entailment", "neutral")  # not NLI_LABELS' order: the order must be the model's
METRICS = {"val_accuracy": 0.8125, "val_macro_f1": 0.8, "val_loss": 0.51, "global_step": 120,
           "effective_batch_size": 32, "train_pairs": 2400, "validation_pairs": 600, "dropped_rows": {}}


def tiny_export(folder, cfg: TrainConfig | None, labels=LABELS, metrics=None, precision=None):
    """A random tiny classifier exported as fit exports its best model."""
    import torch

    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer
    from korpair.types import LabelMap

    torch.manual_seed(0)
    sizes = ModelConfig(from_scratch=True, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2,
                        intermediate_size=64)
    tokenizer, model = build_model_and_tokenizer(sizes, LabelMap(tuple(labels)), KOREAN_TEXTS * 5,
                                                 cfg.data.max_seq_length if cfg else 64)
    with torch.no_grad():  # weights far from BERT's tiny init, so that the scores depend on the input
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.normal_(0.0, 0.3)
    return export_model(model, tokenizer, folder, cfg, metrics=metrics, precision=precision)


@pytest.fixture(scope="module")
def nli_files(tmp_path_factory):
    """train / validation / test files of a small NLI corpus (generated pairs)."""
    from tools.sample_corpus import generate_pair_task

    folder = tmp_path_factory.mktemp("nli")
    rows = generate_pair_task(90, seed=5)
    for name, part in (("train", rows[:30]), ("validation", rows[30:60]), ("test", rows[60:81])):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return folder


def files_config(folder, *extra: str) -> TrainConfig:
    return TrainConfig.from_file(None, [
        "corpus.name=files", f"corpus.train_file={folder / 'train.jsonl'}",
        f"corpus.validation_file={folder / 'validation.jsonl'}", f"corpus.test_file={folder / 'test.jsonl'}",
        "corpus.text_a_column=premise", "corpus.encoding=utf-8", "data.max_seq_length=24",
        "model.from_scratch=true", "model.hidden_size=32", "model.num_heads=2", *extra])


@pytest.fixture(scope="module")
def files_model(nli_files, tmp_path_factory):
    return tiny_export(tmp_path_factory.mktemp("files") / "run" / "model", files_config(nli_files),
                       metrics=METRICS, precision="bf16-mixed")


def test_section_round_trips_and_the_tokenizer_carries_the_max_length(files_model, nli_files):
    from transformers import AutoConfig, AutoTokenizer

    cfg = files_config(nli_files)
    assert sorted(p.name for p in files_model.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    section = read_section(files_model)
    assert section == build_section(cfg, LABELS, METRICS, "bf16-mixed")
    assert section["format_version"] == FORMAT_VERSION and section["task"] == "pair-classification"
    assert section["labels"] == list(LABELS) and section["max_seq_length"] == 24
    assert section["metrics"] == {"val_accuracy": 0.8125, "val_macro_f1": 0.8, "val_loss": 0.51}
    assert section["training"]["precision"] == "bf16-mixed" and section["training"]["from_scratch"] is True
    assert section["corpus"]["validation_file"] == str(nli_files / "validation.jsonl")
    assert section["corpus"]["text_a_column"] == "premise"
    # the recorded corpus reads the same data again
    assert corpus_config(section) == cfg.corpus.model_copy(update={"max_train_pairs": None})
    assert trained_max_length(files_model) == 24
    assert AutoTokenizer.from_pretrained(str(files_model)).model_max_length == 24
    assert Predictor.from_pretrained(files_model).max_seq_length == 24
    # plain transformers keeps the section through its own load and save
    config = AutoConfig.from_pretrained(str(files_model))
    assert config.korpair == section
    assert [config.id2label[i] for i in range(3)] == list(LABELS)


def test_export_leaves_the_callers_model_and_tokenizer_as_they_were(tmp_path):
    import torch

    from korpair.training.export import export_model
    from korpair.training.model import build_model_and_tokenizer
    from korpair.types import LabelMap

    torch.manual_seed(0)
    tokenizer, model = build_model_and_tokenizer(
        ModelConfig(from_scratch=True, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2,
                    intermediate_size=64), LabelMap(LABELS), KOREAN_TEXTS)
    export_model(model, tokenizer, tmp_path / "model", TrainConfig.from_file(None, ["data.max_seq_length=16"]))
    assert tokenizer.model_max_length == 512 and not hasattr(model.config, "korpair")
    assert json.loads((tmp_path / "model" / "tokenizer_config.json").read_text())["model_max_length"] == 16


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    header, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(header)


def test_card_has_the_hub_metadata_header_and_the_labels_in_order(files_model):
    card = (files_model / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["language"] == "ko" and meta["license"] == "other"  # own files: the user states the terms
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "transformers"
    assert "korpair" in meta["tags"] and meta["metrics"] == ["accuracy", "f1"]
    [result] = meta["model-index"][0]["results"]
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"accuracy": 0.8125, "f1": 0.8}
    assert "datasets" not in meta and "base_model" not in meta
    body = card.split("\n---\n", 1)[1]
    rows = [line for line in body.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert rows == [f"| {i} | {name} |" for i, name in enumerate(LABELS)]
    for needed in ("Predictor.from_pretrained", 'pipeline("text-classification"', '"text_pair"',
                   "AutoModelForSequenceClassification", "truncation=True", "24 tokens per pair",
                   "BERT from scratch: 4 layers, 32 wide", "validation.jsonl", "bf16-mixed", "| seed | 7 |"):
        assert needed in body, needed


def test_card_of_a_builtin_corpus_and_a_hub_base_model():
    cfg = TrainConfig.from_file(None, ["corpus.name=klue-nli", "model.name_or_path=klue/roberta-base"])
    meta = front_matter(model_card(build_section(cfg, NLI_LABELS, METRICS)))
    assert meta["datasets"] == ["klue/klue"] and meta["license"] == "cc-by-sa-4.0"
    assert meta["base_model"] == "klue/roberta-base"
    assert meta["model-index"][0]["results"][0]["dataset"]["config"] == "nli"
    # a local base folder is no hub name
    local = cfg.with_overrides(["model.name_or_path=/models/kcbert"])
    assert "base_model" not in front_matter(model_card(build_section(local, NLI_LABELS)))
    # a model built outside a run: labels and usage, no results or recipe
    bare = model_card(build_section(None, ("yes", "no")))
    assert "model-index" not in front_matter(bare) and "## Training" not in bare and "| 1 | no |" in bare


def test_card_licences_are_the_builtin_corpora_licences():
    from korpair.corpora.builtin import BUILTIN_CORPORA

    assert set(HUB_DATASETS) == set(BUILTIN_CORPORA)
    for name, (_, _, licence) in HUB_DATASETS.items():
        stated = BUILTIN_CORPORA[name].license
        # the hub takes licence ids; a licence with none (PAWS-X's own terms) is "other" there
        expected = stated.lower().replace(" ", "-") if stated.startswith("CC ") else "other"
        assert licence == expected, name


def make_legacy(folder, cfg: TrainConfig) -> None:
    """Turn an exported folder into what korpair 0.1 wrote: no section, a side file, a 512 tokenizer."""
    config = json.loads((folder / "config.json").read_text())
    del config["korpair"]
    (folder / "config.json").write_text(json.dumps(config))
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok, "model_max_length": 512}))
    (folder / "README.md").unlink()
    (folder / RUN_CONFIG_NAME).write_text(cfg.to_yaml(), encoding="utf-8")


def test_a_korpair_01_folder_still_loads_with_its_max_length(files_model, nli_files, tmp_path):
    legacy = shutil.copytree(files_model, tmp_path / "model")
    cfg = files_config(nli_files, "data.max_seq_length=40", "corpus.max_train_pairs=10")
    make_legacy(legacy, cfg)
    section = read_section(legacy)
    assert section["format_version"] == 0 and trained_max_length(legacy) == 40
    assert Predictor.from_pretrained(legacy).max_seq_length == 40
    assert corpus_config(section).validation_file == cfg.corpus.validation_file
    report = api.evaluate(legacy)
    assert report.metrics["n"] == 30 and "trained on" in report.metrics["data"]


def test_evaluate_defaults_to_the_recorded_validation_file(files_model, nli_files, caplog):
    with caplog.at_level("INFO", logger="korpair.api"):
        report = api.evaluate(files_model)
    validation = str(nli_files / "validation.jsonl")
    assert report.metrics["data"] == f"files:validation {validation} (the corpus the model was trained on)"
    assert report.metrics["n"] == 30
    assert report.output_dir == files_model.parent / "eval-files-validation"
    assert any(report.metrics["data"] in r.getMessage() for r in caplog.records), "a log line says which data"
    test = api.evaluate(files_model, split="test")
    assert test.metrics["n"] == 21 and str(nli_files / "test.jsonl") in test.metrics["data"]


def test_an_explicit_corpus_or_file_still_wins(files_model, nli_files):
    assert api.evaluate(files_model, corpus="sample").metrics["data"] == "sample:validation"
    report = api.evaluate(files_model, nli_files / "test.jsonl", corpus="sample")
    assert report.metrics["n"] == 21 and report.metrics["data"] == str(nli_files / "test.jsonl")


def test_evaluate_names_what_is_missing(files_model, nli_files, tiny_model_dir, tmp_path):
    with pytest.raises(CorpusError, match=r"records no training corpus.*data= .*corpus= "):
        api.evaluate(tiny_model_dir)
    no_test = tiny_export(tmp_path / "no-test" / "model", files_config(nli_files, "corpus.test_file=null"))
    with pytest.raises(CorpusError, match=r"\(files\) has no test split \(no korpair\.corpus\.test_file in "
                                          r".*config\.json; it has train, validation\); pass data="):
        api.evaluate(no_test, split="test")
    moved = shutil.copytree(nli_files, tmp_path / "moved")
    gone = tiny_export(tmp_path / "gone" / "model", files_config(moved))
    (moved / "validation.jsonl").unlink()
    with pytest.raises(CorpusError, match=r"validation\.jsonl: the validation file the model was trained with "
                                          r"is not found.*data="):
        api.evaluate(gone)


def test_a_builtin_corpus_without_the_split_is_named(tmp_path):
    klue = tiny_export(tmp_path / "klue" / "model", TrainConfig.from_file(None, ["corpus.name=klue-nli"]),
                       labels=NLI_LABELS)
    with pytest.raises(CorpusError, match=r"\(klue-nli\) has no test split .*it has train, validation\); pass data="):
        api.evaluate(klue, split="test")


def test_an_unreadable_recorded_corpus_is_named():
    with pytest.raises(ModelFolderError, match=r"x/config\.json: korpair\.corpus\.name"):
        corpus_config({"corpus": {"name": "klue-ner"}}, "x/config.json")
    assert corpus_config({}) is None and corpus_config({"corpus": "klue-nli"}) is None


def long_pairs(n: int = 12) -> list[tuple[str, str]]:
    """Pairs of several sentences each: far past any max length these tests train with."""
    k = len(KOREAN_TEXTS)
    return [(" ".join(KOREAN_TEXTS[(i + j) % k] for j in range(8 + i % 5)),
             " ".join(KOREAN_TEXTS[(2 * i + j) % k] for j in range(3 + i % 7))) for i in range(n)]


def pipeline_scores(model_dir, pairs, **kwargs) -> list[dict[str, float]]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(model_dir), device="cpu", **kwargs)
    outputs = classify([{"text": a, "text_pair": b} for a, b in pairs], top_k=None)
    return [{d["label"]: d["score"] for d in out} for out in outputs]


def test_pipeline_and_predictor_agree_on_pairs_longer_than_the_trained_max_length(files_model):
    from transformers import AutoTokenizer

    pairs = long_pairs()
    tokenizer = AutoTokenizer.from_pretrained(str(files_model))
    assert min(len(tokenizer(a, b, truncation=False)["input_ids"]) for a, b in pairs) > 40, "every pair must be cut"
    ours = Predictor.from_pretrained(files_model).predict(pairs, batch_size=5)
    theirs = pipeline_scores(files_model, pairs, truncation=True)
    for p, scores in zip(ours, theirs):
        assert max(scores, key=scores.get) == p.label
        assert scores == pytest.approx(p.scores, abs=1e-5)
    # the check has teeth: uncut, the same model scores these pairs differently
    uncut = pipeline_scores(files_model, pairs)
    assert max(abs(s[n] - p.scores[n]) for p, s in zip(ours, uncut) for n in LABELS) > 1e-2
