"""The model-folder contract: what korpair needs to use a model lives in the Hugging Face folder itself.

A korpair model folder is a plain Hugging Face folder whose ``config.json``
holds a ``korpair`` section (format version, task: ``pair-classification``
with its labels or ``pair-regression`` with its score range, trained max
length, korpair version, training corpus, training recipe, best validation
metrics),
whose tokenizer's ``model_max_length`` is the trained max length (so
``transformers.pipeline(..., truncation=True)`` cuts pairs where korpair does)
and whose ``README.md`` is a model card (``korpair.model_card``). Folders written by korpair 0.1 kept
the run config in a side file, ``korpair_train.yaml``; they still load: the
section is then read from that file. ``check_model_folder`` refuses a folder
korpair cannot use before it is loaded, naming the file at fault.

>>> read_section("no/such/folder")
{}
>>> section = build_section(None, ("yes", "no"))
>>> section["labels"], corpus_config(section)
(['yes', 'no'], None)
>>> build_section(None, ScoreRange(0, 5))["task"]
'pair-regression'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from korpair.config import RUN_CONFIG_NAME, CorpusConfig, DataConfig, TrainConfig
from korpair.errors import ModelFolderError
from korpair.types import LabelMap, ScoreRange, Target
from korpair.version import __version__

SECTION = "korpair"  # the key of korpair's section in config.json
FORMAT_VERSION = 1  # bump when the section's meaning changes
TASK = "pair-classification"
REGRESSION_TASK = "pair-regression"
SECTION_TASKS = {"classification": TASK, "regression": REGRESSION_TASK}  # korpair.types.TASKS -> section task
CARD_NAME = "README.md"  # the model card, where the Hugging Face hub looks for it

# The corpus settings that say how to read the same data again; download and max_train_pairs only
# steer a training run.
CORPUS_KEYS = ("name", "data_dir", "train_file", "validation_file", "test_file", "format", "text_a_column",
               "text_b_column", "label_column", "labels", "drop_labels", "encoding", "vote_columns")
# Validation metrics kept in the section, with their names on the hub (model-index metric types).
VALIDATION_METRICS = {"val_accuracy": ("accuracy", "validation accuracy"),
                      "val_macro_f1": ("f1", "validation macro-F1"),
                      "val_f1": ("f1", "validation F1 of the positive (second) label"),
                      "val_spearman": ("spearmanr", "validation Spearman correlation"),
                      "val_pearson": ("pearsonr", "validation Pearson correlation"),
                      "val_mse": ("mse", "validation mean squared error"),
                      "val_mae": ("mae", "validation mean absolute error"),
                      "val_loss": ("loss", "validation loss")}
_FROM_SCRATCH_SIZES = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "dropout")
# A classifier's output layer, as transformers names it (BERT, RoBERTa/ELECTRA, GPT-style): its bias
# has one entry a label.
_HEAD_BIAS = re.compile(r"(?:^|\.)(?:classifier|score)(?:\.out_proj)?\.bias")
_REDO = "copy the folder again from where it came from, or export the model again"


def build_section(cfg: TrainConfig | None, target: Target | Sequence[str], metrics: Mapping[str, Any] | None = None,
                  precision: str | None = None, calibration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``korpair`` section of a model trained with ``cfg`` (``None``: a model built outside a run).

    ``target`` is the label set (a ``LabelMap`` or the names in id order) of a
    classifier, or the ``ScoreRange`` of a regression model.

    ``metrics`` are the best checkpoint's (``val_accuracy``, ``val_macro_f1``,
    ``val_loss``, and the run's counts such as ``global_step``); ``precision``
    is the one training ran in, where ``cfg`` says ``auto``; ``calibration`` what
    was fitted on the validation split after training (``korpair.training.calibrate``).

    >>> cfg = TrainConfig.from_file(None, ["corpus.name=klue-nli", "data.max_seq_length=128"])
    >>> section = build_section(cfg, ("entailment", "neutral", "contradiction"), {"val_accuracy": 0.8})
    >>> section["max_seq_length"], section["corpus"]["name"], section["metrics"]
    (128, 'klue-nli', {'val_accuracy': 0.8})
    """
    metrics = metrics or {}
    section: dict[str, Any] = {"format_version": FORMAT_VERSION}
    if isinstance(target, ScoreRange):
        section.update(task=REGRESSION_TASK, score_range=[target.low, target.high])
    else:
        section.update(task=TASK, labels=list(target.names if isinstance(target, LabelMap) else target))
    section["korpair_version"] = __version__
    if cfg is not None:
        section["max_seq_length"] = cfg.data.max_seq_length
        corpus = cfg.corpus.model_dump(mode="json")
        section["corpus"] = {k: corpus[k] for k in CORPUS_KEYS if corpus[k] is not None}
        section["training"] = _recipe(cfg, metrics, precision,
                                      "regression" if isinstance(target, ScoreRange) else "classification")
    section["metrics"] = {k: float(metrics[k]) for k in VALIDATION_METRICS
                          if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics[k], bool)}
    if calibration is not None:
        section["calibration"] = dict(calibration)
    return section


def read_section(folder: str | Path) -> dict[str, Any]:
    """The folder's ``korpair`` section; from a 0.1 side file where there is none; ``{}`` otherwise."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    section = config.get(SECTION) if isinstance(config, dict) else None
    if isinstance(section, dict):
        return section
    return _legacy_section(folder)


def model_task(folder: str | Path, config: Mapping[str, Any] | None = None) -> str:
    """``"regression"`` or ``"classification"``: what the model in ``folder`` (or with this ``config.json``)
    predicts. Its section says so; a folder from elsewhere is a regression model where transformers would train
    it as one (``problem_type`` regression, or a single output without another problem type)."""
    if config is None:
        try:
            config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
    section = config.get(SECTION) if isinstance(config, dict) else None
    section = section if isinstance(section, dict) else _legacy_section(Path(folder))
    if section.get("task") == REGRESSION_TASK:
        return "regression"
    if section.get("task") == TASK:
        return "classification"
    problem = config.get("problem_type") if isinstance(config, dict) else None
    outputs = len(config.get("id2label") or {}) if isinstance(config, dict) else 0
    if problem == "regression" or (problem is None and outputs == 1):
        return "regression"
    return "classification"


def score_range(folder: str | Path) -> ScoreRange:
    """The score range a regression model records; open bounds where it records none."""
    value = read_section(folder).get("score_range")
    return ScoreRange(*value) if _range_problem(value) is None and value is not None else ScoreRange()


def trained_max_length(folder: str | Path) -> int | None:
    """Tokens per pair the model was trained with, where the folder records a usable value."""
    value = read_section(folder).get("max_seq_length")
    return value if _max_length_problem(value) is None else None


def check_model_folder(folder: str | Path, *, base_model: bool = False) -> None:
    """Raise a ``ModelFolderError`` naming the file at fault if korpair cannot use this local folder.

    Reads ``config.json`` and the weights' headers, never the weights: the
    safetensors files are whole, ``id2label`` numbers 0 to n-1 labels as many
    as the weights' head has outputs, the section holds values korpair wrote.
    ``base_model=True`` (a run's starting point, whose head, labels and section
    are replaced) checks the files only.

    >>> check_model_folder("no/such/folder")
    Traceback (most recent call last):
    korpair.errors.ModelFolderError: no/such/folder: not a model folder (no config.json)
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFolderError(f"{folder}: not a model folder (no config.json)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{config_path}: cannot be read ({err}); {_REDO}") from None
    except ValueError as err:
        raise ModelFolderError(f"{config_path}: not valid JSON ({err}); {_REDO}") from None
    if not isinstance(config, dict):
        raise ModelFolderError(f"{config_path}: not a JSON object; {_REDO}")
    head = _check_weights(folder)
    if base_model:
        return
    n_labels = _check_labels(config, config_path)
    if head is not None and n_labels is not None and head[1] != n_labels:
        raise ModelFolderError(f"{config_path}: id2label names {n_labels} labels, but the weights' classification "
                               f"head ({head[0]}) has {head[1]} outputs; set id2label (and label2id) to the "
                               f"{head[1]} labels the model was trained with, in output order")
    if SECTION in config and not isinstance(config[SECTION], dict):
        raise ModelFolderError(f"{config_path}: {SECTION} must be an object (a korpair section); {_REDO}")
    where = config_path if isinstance(config.get(SECTION), dict) else folder / RUN_CONFIG_NAME
    _check_section(read_section(folder), config, str(where))


def check_tokenizer_files(folder: str | Path, file_names: Sequence[str]) -> None:
    """Refuse a local folder with none of a tokenizer's ``vocab_files_names``: transformers would build an
    empty tokenizer from it, which silently turns every word into ``[UNK]``."""
    folder = Path(folder)
    if file_names and not any((folder / name).is_file() for name in file_names):
        raise ModelFolderError(f"{folder}: no tokenizer files (looked for {', '.join(sorted(set(file_names)))}); "
                               "copy in the tokenizer the model was trained with (tokenizer.save_pretrained)")


def _check_weights(folder: Path) -> tuple[str, int] | None:
    """Check each safetensors file's size against its header; return the classification head
    ``(tensor name, outputs)`` where exactly one is found."""
    files = sorted(folder.glob("model*.safetensors"))  # one file, or the shards of a large model
    heads = [(name, spec["shape"][0]) for path in files for name, spec in _safetensors_header(path).items()
             if _HEAD_BIAS.search(name) and len(spec.get("shape", ())) == 1]
    return heads[0] if len(heads) == 1 else None


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file describes, after checking that the file holds all their bytes."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            raw = fh.read(length) if 8 + length <= size else b""
    except OSError as err:
        raise ModelFolderError(f"{path}: cannot be read ({err}); {_REDO}") from None
    try:
        header = json.loads(raw)
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((int(t["data_offsets"][1]) for t in tensors.values()), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise ModelFolderError(f"{path}: truncated or damaged: not a whole safetensors file ({size} bytes); "
                               f"{_REDO}") from None
    if 8 + length + end != size:
        raise ModelFolderError(f"{path}: truncated or damaged: holds {size} bytes where its header describes "
                               f"{8 + length + end}; {_REDO}")
    return tensors


def _check_labels(config: Mapping[str, Any], config_path: Path) -> int | None:
    """The number of labels ``id2label`` names, after checking that they are numbered 0 to n-1."""
    id2label = config.get("id2label")
    if id2label is None:
        return None
    try:
        ids = sorted(int(k) for k in id2label) if isinstance(id2label, dict) else None
    except ValueError:
        ids = None
    if ids is None or ids != list(range(len(ids))) or not all(isinstance(v, str) for v in id2label.values()):
        raise ModelFolderError(f"{config_path}: id2label {id2label!r} does not number its labels 0 to n-1, each "
                               "once; set it (and label2id) to the labels the model was trained with, in output "
                               "order")
    return len(ids)


def _check_section(section: Mapping[str, Any], config: Mapping[str, Any], where: str) -> None:
    """Every value of the section that korpair reads, checked at once; ``where`` names its file."""
    problems = []
    if (problem := _max_length_problem(section.get("max_seq_length", 64))) is not None:
        problems.append(f"max_seq_length: {problem}")
    labels = section.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        problems.append(f"labels: must be a list of label names (got {labels!r})")
    elif labels is not None and isinstance(config.get("id2label"), dict):
        in_order = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
        if labels != in_order:
            problems.append(f"labels: {labels} differ from config.json's id2label {in_order}")
    version = section.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= FORMAT_VERSION:
        problems.append(f"format_version: {version!r} is not one this korpair reads (0 to {FORMAT_VERSION}; "
                        "a newer korpair writes higher ones)")
    task = section.get("task", TASK)
    if task not in SECTION_TASKS.values():
        problems.append(f"task: {task!r}; this korpair serves {' and '.join(map(repr, SECTION_TASKS.values()))} "
                        "models")
    elif task == REGRESSION_TASK:
        outputs = len(config.get("id2label") or {}) or config.get("num_labels")
        if outputs not in (None, 1):
            problems.append(f"task: {task!r} needs one output, but config.json names {outputs} labels")
        if (problem := _range_problem(section.get("score_range"))) is not None:
            problems.append(f"score_range: {problem}")
    if (problem := calibration_problem(section.get("calibration"), task)) is not None:
        problems.append(f"calibration: {problem}")
    if problems:
        raise ModelFolderError(f"{where}: the {SECTION} section is not usable: " + "; ".join(problems)
                               + "; fix these values, or export the model again")
    corpus_config(section, where)


def calibration_problem(value: Any, task: str = TASK) -> str | None:
    """What is wrong with a recorded calibration: a classifier's needs a temperature > 0, a regression
    model's a finite scale and shift; ``None`` (no calibration) is fine."""
    if value is None:
        return None
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    if not isinstance(value, dict):
        return f"must be an object, got {value!r}"
    if task == REGRESSION_TASK:
        if value.get("method") != "affine" or not (number(value.get("scale")) and number(value.get("shift"))):
            return f"a regression model's is {{method: affine, scale, shift}} (finite numbers), got {value!r}"
    elif value.get("method") != "temperature" or not (number(value.get("temperature")) and value["temperature"] > 0):
        return f"a classifier's is {{method: temperature, temperature}} (a number > 0), got {value!r}"
    return None


def _range_problem(value: Any) -> str | None:
    if value is None:
        return None
    ok = (isinstance(value, list) and len(value) == 2
          and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value))
    if not ok:
        return f"must be [low, high] (numbers, or null for an open bound), got {value!r}"
    if None not in value and not value[0] < value[1]:
        return f"needs low < high, got {value!r}"
    return None


def _max_length_problem(value: Any) -> str | None:
    """What is wrong with a recorded max length; the bounds are those of ``data.max_seq_length``."""
    field = DataConfig.model_fields["max_seq_length"]
    low = next(m.ge for m in field.metadata if hasattr(m, "ge"))
    high = next(m.le for m in field.metadata if hasattr(m, "le"))
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return None
    return f"must be a whole number of tokens from {low} to {high} (got {value!r})"


def corpus_config(section: Mapping[str, Any], where: str = "config.json") -> CorpusConfig | None:
    """The corpus a model was trained on, as recorded in its section; ``None`` where none is.

    ``where`` names the file the section came from, for the error raised when
    the record is not one this korpair can read.

    >>> corpus_config({"corpus": {"name": "kornli", "max_train_pairs": 1000}}).name
    'kornli'
    """
    raw = section.get("corpus")
    if not isinstance(raw, Mapping) or "name" not in raw:
        return None
    try:
        return CorpusConfig.model_validate({k: raw[k] for k in CORPUS_KEYS if k in raw})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ModelFolderError(f"{where}: {SECTION}.corpus.{key}: {first['msg']} (got {first.get('input')!r}); "
                               "the recorded training corpus cannot be read by this korpair version") from None


def _recipe(cfg: TrainConfig, metrics: Mapping[str, Any], precision: str | None, task: str) -> dict[str, Any]:
    m, o, t = cfg.model, cfg.optim, cfg.trainer
    if m.from_scratch:
        model: dict[str, Any] = {"from_scratch": True, **{k: getattr(m, k) for k in _FROM_SCRATCH_SIZES}}
    else:
        model = {"base_model": m.name_or_path, "revision": m.revision}
    recipe = {
        **model, "batch_size": cfg.data.batch_size, "effective_batch_size": metrics.get("effective_batch_size"),
        "optimizer": o.optimizer, "lr": o.lr, "weight_decay": o.weight_decay, "scheduler": o.scheduler,
        "warmup": o.warmup_steps if o.warmup_steps is not None else o.warmup_ratio,
        "max_epochs": t.max_epochs, "global_step": metrics.get("global_step"),
        "precision": precision or t.precision, "seed": t.seed, "monitor": cfg.monitor_for(task),
        "train_pairs": metrics.get("train_pairs"), "validation_pairs": metrics.get("validation_pairs"),
    }
    return {k: v for k, v in recipe.items() if v is not None}


def _legacy_section(folder: Path) -> dict[str, Any]:
    """What a korpair 0.1 folder's ``korpair_train.yaml`` tells of the section."""
    try:
        run = yaml.safe_load((folder / RUN_CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(run, dict):
        return {}
    section: dict[str, Any] = {"format_version": 0}
    try:
        section["max_seq_length"] = int(run["data"]["max_seq_length"])
    except (KeyError, TypeError, ValueError):
        pass
    if isinstance(run.get("corpus"), dict):
        section["corpus"] = run["corpus"]
    return section
