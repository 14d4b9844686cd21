"""The model card (``README.md``) of a korpair model folder, written from its ``korpair`` section.

It opens with the Hugging Face hub's metadata header (YAML front matter),
then says what the model outputs (labels in id order, or a score and its
range), its validation results, how to load it with korpair and with plain
transformers, and the training recipe.

>>> from korpair.model_folder import build_section
>>> card = model_card(build_section(None, ("yes", "no")))
>>> card.startswith("---\\nlanguage: ko\\n"), "| 1 | no |" in card
(True, True)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from korpair.model_folder import REGRESSION_TASK, VALIDATION_METRICS
from korpair.version import __version__

# Built-in corpora as the hub names them (dataset, config), and their licence (as korpair.corpora.builtin states).
HUB_DATASETS = {"klue-nli": ("klue/klue", "nli", "cc-by-sa-4.0"),
                "kornli": ("kakaobrain/kor_nli", None, "cc-by-sa-4.0"),
                "klue-sts": ("klue/klue", "sts", "cc-by-sa-4.0"),
                "korsts": ("kakaobrain/kor_nlu", "sts", "cc-by-sa-4.0"),
                "paws-x-ko": ("google-research-datasets/paws-x", "ko", "other")}
_HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")


def model_card(section: Mapping[str, Any], model_ref: str = "path/to/model", title: str = "korpair model") -> str:
    """A Hugging Face model card for a folder with this section; ``model_ref`` is what the code examples load
    (the folder, or a hub name once uploaded)."""
    regression = section.get("task") == REGRESSION_TASK
    corpus = section.get("corpus") if isinstance(section.get("corpus"), Mapping) else {}
    training = section.get("training") if isinstance(section.get("training"), Mapping) else {}
    metrics = section.get("metrics") if isinstance(section.get("metrics"), Mapping) else {}
    max_length = section.get("max_seq_length")
    version = section.get("korpair_version", __version__)
    ref = json.dumps(model_ref, ensure_ascii=False)
    trained = f"trained with [korpair](https://pypi.org/project/korpair/) {version}"
    parts = ["---\n" + yaml.safe_dump(_card_metadata(title, corpus, training, metrics, regression),
                                      sort_keys=False, allow_unicode=True) + "---", f"# {title}"]
    if regression:
        low, high = (section.get("score_range") or [None, None])[:2]
        shown = f"from {low:g} to {high:g}" if low is not None and high is not None else "on the training data's scale"
        parts += [f"A Korean sentence-pair similarity model (regression) {trained}. It reads two texts and gives "
                  f"one score, {shown} as in its training data (higher: more similar). The score is the "
                  "model's raw output: it is not clipped to the range."]
    else:
        labels = [str(x) for x in section.get("labels") or []]
        parts += [f"A Korean sentence-pair classifier {trained}. It reads two texts (premise, hypothesis) and "
                  "gives the probability of each label.",
                  "## Labels", "Label ids, in the order of the model's outputs (`config.json` `id2label`):",
                  "| id | label |\n|---:|---|\n" + "\n".join(f"| {i} | {name} |" for i, name in enumerate(labels))]
    if metrics:
        shown_metrics = {k: VALIDATION_METRICS[k][1] for k in VALIDATION_METRICS if k in metrics}
        parts += ["## Validation results", f"On {_corpus_name(corpus)}, split validation, best checkpoint:",
                  "| metric | value |\n|---|---:|\n"
                  + "\n".join(f"| {name} | {metrics[k]:.4f} |" for k, name in shown_metrics.items())]
    cut = (f"Pairs longer than {max_length} tokens are cut as in training (the longer text first): the "
           f"tokenizer's `model_max_length` is {max_length}, so pass `truncation=True`." if max_length else
           "Pass `truncation=True` so that long pairs are cut to the tokenizer's `model_max_length`.")
    shown_result = "p.score" if regression else "p.label, p.scores"
    # config.json's problem_type "regression" makes the pipeline return the raw score (no sigmoid)
    output = ("    score = model(**batch).logits[0, 0].item()\nprint(score)" if regression else
              "    probs = model(**batch).logits.softmax(-1)\nprint(model.config.id2label[int(probs.argmax())])")
    parts += ["## Use with korpair", "```python\nfrom korpair import Predictor\n\n"
              f"predictor = Predictor.from_pretrained({ref})\n"
              f'[p] = predictor.predict([("비가 온다", "날씨가 맑다")])\nprint({shown_result})\n```',
              "## Use with transformers", cut,
              "```python\nfrom transformers import pipeline\n\n"
              f'classify = pipeline("text-classification", model={ref}, truncation=True)\n'
              'classify({"text": "비가 온다", "text_pair": "날씨가 맑다"}, top_k=None)\n```',
              "```python\nimport torch\nfrom transformers import AutoModelForSequenceClassification, "
              f"AutoTokenizer\n\ntokenizer = AutoTokenizer.from_pretrained({ref})\n"
              f"model = AutoModelForSequenceClassification.from_pretrained({ref})\n"
              'batch = tokenizer(["비가 온다"], ["날씨가 맑다"], truncation=True, return_tensors="pt")\n'
              f"with torch.no_grad():\n{output}\n```"]
    calibration = section.get("calibration") if isinstance(section.get("calibration"), Mapping) else None
    if calibration:
        parts += ["## Calibration", _calibration_text(calibration)]
    if training:
        parts += ["## Training", "| setting | value |\n|---|---|\n"
                  + "\n".join(f"| {k} | {v} |" for k, v in _recipe_rows(corpus, training, max_length))]
    license_note = ("The `license` field follows the training data" if corpus.get("name") in HUB_DATASETS
                    else "Set the `license` field to the terms of the training data")
    base = " and of the base model" if training.get("base_model") else ""
    parts += ["## License", f"{license_note}; the terms of the data{base} apply to this model."]
    return "\n\n".join(parts) + "\n"


def _calibration_text(calibration: Mapping[str, Any]) -> str:
    """What was fitted after training, what it changed, and how to apply it without korpair."""
    before, after = calibration.get("before", {}), calibration.get("after", {})
    if calibration.get("method") == "affine":
        scale, shift = calibration["scale"], calibration["shift"]
        return (f"korpair maps the model's raw score `s` to `{scale:.4f} * s {shift:+.4f}`, fitted on the validation "
                f"split after training (MSE {before.get('mse', float('nan')):.4f} -> "
                f"{after.get('mse', float('nan')):.4f}). `Predictor` applies it; with transformers, apply it to "
                "`logits[0, 0]` yourself.")
    t = calibration["temperature"]
    return (f"korpair divides the logits by a temperature T = {t:.4f} before the softmax, fitted on the validation "
            f"split after training so that the probabilities can be read as such (NLL "
            f"{before.get('nll', float('nan')):.4f} -> {after.get('nll', float('nan')):.4f}, expected calibration "
            f"error {before.get('ece', float('nan')):.4f} -> {after.get('ece', float('nan')):.4f}). It changes no "
            f"label. `Predictor` applies it (`calibrated=False` gives the raw probabilities); with transformers, "
            f"use `(logits / {t:.4f}).softmax(-1)`.")


def _corpus_name(corpus: Mapping[str, Any]) -> str:
    return str(corpus.get("name", "the validation data"))


def _card_metadata(title: str, corpus: Mapping[str, Any], training: Mapping[str, Any],
                   metrics: Mapping[str, Any], regression: bool = False) -> dict[str, Any]:
    hub = HUB_DATASETS.get(str(corpus.get("name")))
    meta: dict[str, Any] = {"language": "ko", "license": hub[2] if hub else "other"}
    if hub:
        meta["datasets"] = [hub[0]]
    base = training.get("base_model")
    if isinstance(base, str) and _HUB_NAME.fullmatch(base) and not base.startswith("."):
        meta["base_model"] = base  # a hub name; a local folder means nothing on the hub
    meta.update({"library_name": "transformers", "pipeline_tag": "text-classification",
                 "tags": ["korpair", "semantic-similarity" if regression else "sentence-pair-classification",
                          "korean"]})
    scored = [k for k in VALIDATION_METRICS if k in metrics and k not in ("val_loss", "val_mse", "val_mae")]
    if scored:
        meta["metrics"] = [VALIDATION_METRICS[k][0] for k in scored]
        dataset = {"name": _corpus_name(corpus), "type": hub[0] if hub else _corpus_name(corpus),
                   **({"config": hub[1]} if hub and hub[1] else {}), "split": "validation"}
        meta["model-index"] = [{"name": title, "results": [{
            "task": {"type": "text-classification",
                     "name": "Sentence-pair similarity" if regression else "Sentence-pair classification"},
            "dataset": dataset,
            "metrics": [{"type": VALIDATION_METRICS[k][0], "value": round(float(metrics[k]), 4),
                         "name": VALIDATION_METRICS[k][1],
                         **({"args": {"average": "macro"}} if k == "val_macro_f1" else {})} for k in scored],
        }]}]
    return meta


def _recipe_rows(corpus: Mapping[str, Any], training: Mapping[str, Any], max_length: Any) -> list[tuple]:
    if training.get("from_scratch"):
        t = training
        model = (f"BERT from scratch: {t.get('num_layers')} layers, {t.get('hidden_size')} wide, "
                 f"{t.get('num_heads')} heads, feed-forward {t.get('intermediate_size')}, "
                 f"vocabulary {t.get('vocab_size')} (WordPiece from the training texts)")
    else:
        revision = f" (revision {training['revision']})" if training.get("revision") else ""
        model = f"{training.get('base_model')}{revision}"
    files = ", ".join(f"{split}: {corpus[f'{split}_file']}" for split in ("train", "validation", "test")
                      if corpus.get(f"{split}_file"))
    rows = [("model", model), ("corpus", _corpus_name(corpus) + (f" ({files})" if files else "")),
            ("max length", f"{max_length} tokens per pair"),
            ("batch size", f"{training.get('batch_size')} (effective "
                           f"{training.get('effective_batch_size', training.get('batch_size'))})"),
            ("learning rate", f"{training.get('lr')} ({training.get('optimizer')}, {training.get('scheduler')} "
                              f"schedule, warmup {training.get('warmup')})"),
            ("epochs", training.get("max_epochs")), ("precision", training.get("precision")),
            ("seed", training.get("seed")), ("best checkpoint by", training.get("monitor"))]
    for key, name in (("global_step", "optimizer steps"), ("train_pairs", "training pairs"),
                      ("validation_pairs", "validation pairs")):
        if key in training:
            rows.append((name, training[key]))
    return rows


