"""Typed, validated configuration.

A training run is described by one ``TrainConfig`` (five sections). It can be
built in Python, read from a YAML/JSON file, and patched with ``key=value``
overrides such as ``optim.lr=3e-5``. A misspelt key or an out-of-range value is
a ``ConfigError`` that names the key.

Example::

    cfg = TrainConfig.from_file("configs/sample.yaml", overrides=["trainer.max_epochs=2"])
    cfg.trainer.max_epochs  # 2
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from korpair.errors import ConfigError
from korpair.types import TRAIN_PRECISIONS

# What each built-in corpus trains; korpair.corpora.builtin holds their files, labels and score ranges.
BUILTIN_TASKS = {"sample": "classification", "klue-nli": "classification", "kornli": "classification",
                 "korsts": "regression", "klue-sts": "regression", "paws-x-ko": "classification"}
# The validation metrics each task reports, any of which can pick the best checkpoint; the first is the default.
MONITORS = {"classification": ("val_accuracy", "val_macro_f1", "val_f1", "val_loss"),
            "regression": ("val_spearman", "val_pearson", "val_mse", "val_mae", "val_loss")}
LOWER_IS_BETTER = ("val_loss", "val_mse", "val_mae")

# Saved in every run folder: the resolved config, read back by ``korpair train --resume``.
RUN_CONFIG_NAME = "korpair_train.yaml"


def korpair_home() -> Path:
    """Where korpair keeps downloaded corpora and cached features: ``$KORPAIR_HOME`` or ``~/.cache/korpair``."""
    return Path(os.environ.get("KORPAIR_HOME") or Path.home() / ".cache" / "korpair")


def _cli(*flags: str) -> dict[str, Any]:
    # Short spellings of a key's generated ``korpair train --section.key`` option, kept beside the key.
    return {"cli_aliases": list(flags)}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class CorpusConfig(_Section):
    """Where the sentence pairs come from."""

    name: Literal["sample", "klue-nli", "kornli", "korsts", "klue-sts", "paws-x-ko", "files"] = Field(
        "sample", description="built-in corpus, or 'files' for your own train/validation/test files",
        json_schema_extra=_cli("--corpus"))
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="classification (labels) or regression (a score, e.g. similarity 0-5); auto: a "
        "built-in corpus's own task, for files numeric labels with fractions or many values mean regression",
        json_schema_extra=_cli("--task"))
    score_range: tuple[float, float] | None = Field(
        None, description="regression: lowest and highest valid score, e.g. [0, 5]; a score outside is an error; "
        "default: a built-in corpus's own, none for files")
    data_dir: Path | None = Field(
        None, description="folder holding (or receiving) a built-in corpus's files; default "
        "~/.cache/korpair/corpora/NAME", json_schema_extra=_cli("--data-dir"))
    download: bool = Field(True, description="download a built-in corpus when its files are missing")
    train_file: Path | None = Field(
        None, description="training file (CSV, TSV, JSONL or JSON)", json_schema_extra=_cli("--train-file"))
    validation_file: Path | None = Field(None, description="validation file",
                                         json_schema_extra=_cli("--validation-file"))
    test_file: Path | None = Field(None, description="optional test file")
    format: Literal["auto", "csv", "tsv", "jsonl", "json"] = Field("auto", description="file format; 'auto' goes by "
                                                                   "the file extension")
    text_a_column: str | None = Field(None, description="column of the first text (premise)")
    text_b_column: str | None = Field(None, description="column of the second text (hypothesis)")
    label_column: str | None = Field(None, description="column of the gold label")
    labels: tuple[str, ...] | None = Field(
        None, description="label names in id order; default: the corpus's own, or sorted from the data"
    )
    drop_labels: tuple[str, ...] = Field(("-",), description="gold labels whose rows are dropped (and counted), "
                                                           "e.g. KLUE's '-'")
    encoding: str = Field("utf-8", description="text encoding of the files, e.g. cp949 or euc-kr")
    max_train_pairs: int | None = Field(None, ge=1, description="use only the first N training pairs")

    @model_validator(mode="before")
    @classmethod
    def _own_training_file_means_files(cls, data: Any) -> Any:
        # 'sample' is the default name, so a training file beside it can only mean the user's own corpus
        if isinstance(data, dict) and data.get("train_file") is not None and data.get("name", "sample") == "sample":
            data = {**data, "name": "files"}
        return data

    @model_validator(mode="after")
    def _files_are_given(self) -> CorpusConfig:
        missing = [f"corpus.{key}" for key in ("train_file", "validation_file") if getattr(self, key) is None]
        if self.name == "files" and missing:
            raise ValueError(f"corpus.name='files' (your own data, which a corpus.train_file implies) "
                             f"needs {' and '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _task_fits_corpus(self) -> CorpusConfig:
        own = BUILTIN_TASKS.get(self.name)
        if own is not None and self.task not in ("auto", own):
            others = [n for n, t in BUILTIN_TASKS.items() if t == self.task]
            raise ValueError(f"corpus.task={self.task!r} does not fit corpus.name={self.name!r}, a {own} corpus; "
                             f"{self.task} corpora: {', '.join(others)} (or your own files)")
        if self.score_range is not None:
            if self.known_task == "classification":
                raise ValueError("corpus.score_range applies to regression; this corpus is classification")
            low, high = self.score_range
            if not low < high:
                raise ValueError(f"corpus.score_range: needs low < high, got {list(self.score_range)}")
        if self.labels is not None and self.known_task == "regression":
            raise ValueError("corpus.labels applies to classification; a regression corpus has scores "
                             "(corpus.score_range bounds them)")
        return self

    @property
    def known_task(self) -> str | None:
        """The task the config fixes (set, or a built-in corpus's own); ``None``: the data decides."""
        if self.task != "auto":
            return self.task
        return BUILTIN_TASKS.get(self.name)


class ModelConfig(_Section):
    """Which network to fine-tune."""

    name_or_path: str = Field(
        "beomi/kcbert-base", description="Hugging Face hub name or local folder of a checkpoint; ignored when "
        "from_scratch", json_schema_extra=_cli("--model"))
    from_scratch: bool = Field(False, description="build a small BERT and a WordPiece vocabulary from the training "
                                                  "texts")
    trust_remote_code: bool = Field(
        False, description="allow model code from the hub (off for safety)",
        json_schema_extra=_cli("--trust-remote-code"))
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) to pin")
    # from-scratch sizes; defaults give a 4-layer, 256-wide BERT
    vocab_size: int = Field(8000, ge=100, le=200_000, description="WordPiece vocabulary size (from_scratch)")
    hidden_size: int = Field(256, ge=16, description="hidden width (from_scratch)")
    num_layers: int = Field(4, ge=1, le=48, description="transformer layers (from_scratch)")
    num_heads: int = Field(4, ge=1, description="attention heads (from_scratch)")
    intermediate_size: int = Field(1024, ge=16, description="feed-forward width (from_scratch)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout probability (from_scratch)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        return self


class DataConfig(_Section):
    """How pairs become tensors."""

    max_seq_length: int = Field(64, ge=8, le=4096, description="tokens per pair after truncation")
    batch_size: int = Field(32, ge=1, description="training pairs per step (per device)",
                            json_schema_extra=_cli("--batch-size"))
    eval_batch_size: int = Field(64, ge=1, description="pairs per evaluation batch")
    group_by_length: bool = Field(True, description="batch pairs of similar length together (less padding, same "
                                                    "randomness)")
    pad_to_multiple_of: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto", description="round each batch's length up to this multiple; auto: 8 on a GPU (tensor-core "
        "shapes), none on a CPU (where it only adds padding)"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes; 0 is safe in notebooks and "
                                                  "scripts alike")
    cache_dir: Path | None = Field(None, description="where encoded features are cached; default "
                                   "~/.cache/korpair/features")


class OptimConfig(_Section):
    """Optimizer and learning-rate schedule."""

    optimizer: Literal["adamw", "adam"] = Field("adamw", description="AdamW (default) or the recipe's Adam")
    lr: float = Field(5e-5, gt=0, le=1.0, description="peak learning rate", json_schema_extra=_cli("--lr"))
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay (adamw); not on biases or norms")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon")
    scheduler: Literal["linear", "cosine", "constant", "exponential"] = Field(
        "linear",
        description="linear/cosine: warmup then decay per step; exponential: lr*gamma**epoch as in the recipe")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="fraction of steps spent warming up")
    warmup_steps: int | None = Field(None, ge=0, description="warmup steps; overrides warmup_ratio")
    gamma: float = Field(0.9, gt=0, le=1, description="decay per epoch for scheduler=exponential")


class TrainerConfig(_Section):
    """The Lightning Trainer and the run's outputs."""

    output_dir: Path = Field(Path("runs/latest"), description="folder for the model, logs and plots",
                             json_schema_extra=_cli("-o", "--output-dir"))
    seed: int = Field(7, description="seed for weights, shuffling and dropout", json_schema_extra=_cli("--seed"))
    max_epochs: int = Field(3, ge=1, description="epochs to train", json_schema_extra=_cli("--epochs"))
    max_steps: int = Field(-1, ge=-1, description="stop after this many optimizer steps (-1: no limit)",
                           json_schema_extra=_cli("--max-steps"))
    precision: Literal[TRAIN_PRECISIONS] = Field(
        "auto", description="numeric precision; auto: bf16-mixed where the hardware computes in bf16 "
        "(a GPU with bf16, a CPU with AVX512-BF16 or AMX), else 32", json_schema_extra=_cli("--precision"))
    gradient_clip_val: float | None = Field(1.0, ge=0, description="clip gradient norm to this value")
    accumulate_grad_batches: int = Field(1, ge=1, description="batches per optimizer step")
    val_check_interval: int | float = Field(
        1.0, gt=0, description="validate every N training batches (int) or fraction of an epoch (float)")
    checkpoint_every_n_steps: int | None = Field(
        None, ge=1, description="also save the resume point (checkpoints/last.ckpt) every N optimizer steps, for "
        "long epochs; it is saved at every validation anyway; null: at validations only")
    monitor: Literal["auto", "val_accuracy", "val_macro_f1", "val_f1", "val_loss", "val_spearman", "val_pearson",
                     "val_mse", "val_mae"] = Field(
        "auto", description="metric that picks the best checkpoint; auto: val_accuracy for classification, "
        "val_spearman for regression; val_f1 is the positive (second) label's F1 of a two-label classifier")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many validations without improvement")
    accelerator: str = Field("auto", description="cpu, gpu, mps or auto", json_schema_extra=_cli("--accelerator"))
    devices: int | str = Field("auto", description="number of devices, or 'auto'",
                               json_schema_extra=_cli("--devices"))
    num_nodes: int = Field(1, ge=1, description="machines taking part (DDP)", json_schema_extra=_cli("--num-nodes"))
    strategy: str = Field("auto", description="auto, ddp, fsdp, deepspeed ... (passed to Lightning)",
                          json_schema_extra=_cli("--strategy"))
    log_every_n_steps: int = Field(10, ge=1, description="log training loss and lr every N steps")
    progress_bar: bool = Field(True, description="show a progress bar")
    deterministic: bool = Field(False, description="ask torch for deterministic algorithms")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        # YAML and ``trainer.precision=32`` give the number 32; Lightning's names are text
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TrainConfig(_Section):
    """Everything one training run needs; saved beside the model it produced.

    Overrides given together (``from_file``, ``with_overrides``, ``replace``,
    ``load_config``) imply what they leave out, the same from Python and the
    shell: a ``corpus.train_file`` without a ``corpus.name`` means your own
    files (``corpus.name=files``), and a ``model.name_or_path`` without
    ``model.from_scratch`` means fine-tuning that checkpoint. Given together,
    ``model.name_or_path`` and ``model.from_scratch=true`` are a ``ConfigError``.
    """

    corpus: CorpusConfig = CorpusConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()

    @model_validator(mode="after")
    def _monitor_fits_task(self) -> TrainConfig:
        task = self.corpus.known_task
        if task is not None:
            check_monitor(self.trainer.monitor, task)
        return self

    def monitor_for(self, task: str) -> str:
        """The metric that picks the best checkpoint of a run of ``task``; ``auto`` resolved."""
        check_monitor(self.trainer.monitor, task)
        return MONITORS[task][0] if self.trainer.monitor == "auto" else self.trainer.monitor

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> TrainConfig:
        """Validate a nested dict; errors name ``source`` and the dotted key."""
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise ConfigError(_explain(err, source)) from None

    @classmethod
    def from_file(cls, path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
        """Read a YAML or JSON file (or start from defaults) and apply ``key=value`` overrides.

        >>> TrainConfig.from_file(None, ["data.max_seq_length=128"]).data.max_seq_length
        128
        """
        raw: dict[str, Any] = {}
        source = "defaults"
        if path is not None:
            path = Path(path)
            source = str(path)
            raw = read_config_file(path)
        if not overrides:
            return cls.from_dict(raw, source)
        return cls.from_dict(_merge(raw, _given(overrides)), f"{source} + overrides")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/YAML-safe dict (paths as strings)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The config as YAML, in field order: a file ``from_file`` reads back to an equal config."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def with_overrides(self, overrides: Sequence[str]) -> TrainConfig:
        """Copy with ``key=value`` overrides applied: ``cfg.with_overrides(["optim.lr=1e-4"])``."""
        return TrainConfig.from_dict(_merge(self.to_dict(), _given(overrides)), "overrides")

    def replace(self, **sections: Any) -> TrainConfig:
        """Copy with some fields changed: ``cfg.replace(trainer={"max_epochs": 1})``.

        A section given as a dict changes only its keys; given as a config object, it replaces the section.
        """
        given = {name: dict(values) if isinstance(values, dict) else values for name, values in sections.items()}
        return TrainConfig.from_dict(_merge(self.to_dict(), _implied(given, "replace()")), "replace()")


def check_monitor(monitor: str, task: str) -> None:
    """Refuse a ``trainer.monitor`` that a run of ``task`` does not report."""
    if monitor != "auto" and monitor not in MONITORS[task]:
        raise ValueError(f"trainer.monitor={monitor!r} is not reported by {task}; it reports "
                         f"{', '.join(MONITORS[task])} (or auto)")


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML/JSON config into a dict, with errors that name the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def _given(overrides: Sequence[str]) -> dict[str, Any]:
    """The nested keys that ``key=value`` overrides set, with what they imply."""
    given: dict[str, Any] = {}
    for item in overrides:
        _apply_override(given, item)
    return _implied(given, "overrides")


def _implied(given: dict[str, Any], source: str) -> dict[str, Any]:
    """Add the keys that keys given together imply; raise when they contradict each other."""
    corpus, model = given.get("corpus"), given.get("model")
    # Your own training file replaces whatever corpus the base config (a preset, a file) names.
    if isinstance(corpus, dict) and corpus.get("train_file") is not None and "name" not in corpus:
        corpus["name"] = "files"
    if isinstance(model, dict) and model.get("name_or_path") is not None:
        if model.get("from_scratch") is True:
            raise ConfigError(
                f"{source}: model.name_or_path={model['name_or_path']!r} and model.from_scratch=true contradict "
                "each other: a checkpoint is fine-tuned, from_scratch builds a new model; give only one"
            )
        model.setdefault("from_scratch", False)
    return given


def _merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in given.items():
        old = merged.get(key)
        merged[key] = _merge(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return merged


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-5")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = _parse_value(parts, value)


def _parse_value(parts: list[str], text: str) -> Any:
    # YAML gives numbers, booleans, null and lists their types; a key that holds text keeps
    # what was typed (a model named "yes" or a file named "2024" is not a bool or a number).
    if not text.strip():
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value is None or isinstance(value, str) or not _holds_text(parts) else text


def _holds_text(parts: list[str]) -> bool:
    section = TrainConfig.model_fields.get(parts[0]) if len(parts) == 2 else None
    field = section.annotation.model_fields.get(parts[1]) if section else None
    if field is None:
        return False
    kinds = set(get_args(field.annotation) or (field.annotation,)) - {type(None)}
    return kinds <= {str, Path}


def _explain(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; {_known_keys(e['loc'])}")
        elif e["type"] == "value_error":
            lines.append(f"  {key}: {e['ctx']['error']}")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _known_keys(loc: tuple) -> str:
    section = TrainConfig.model_fields.get(str(loc[0]))
    if section is None or len(loc) != 2:
        return f"the sections are {', '.join(TrainConfig.model_fields)}"
    names = list(section.annotation.model_fields)
    close = difflib.get_close_matches(str(loc[1]), names, n=1)
    if close:
        return f"did you mean {loc[0]}.{close[0]}?"
    return f"{loc[0]} has {', '.join(names)}"


def presets() -> dict[str, Path]:
    """Named configs shipped with korpair (``korpair train sample``)."""
    folder = Path(str(resources.files("korpair") / "presets"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_config(config: str | Path | TrainConfig | dict | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A ``TrainConfig`` from a preset name, a YAML/JSON path, a dict or a config, with overrides applied.

    >>> load_config("sample", ["model.name_or_path=klue/bert-base"]).model.from_scratch
    False
    >>> load_config("sample", ["corpus.train_file=train.tsv", "corpus.validation_file=dev.tsv"]).corpus.name
    'files'
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if isinstance(config, TrainConfig):
        return config.with_overrides(list(overrides))
    if config is not None and not Path(config).exists():
        known = presets()
        if str(config) not in known:
            raise ConfigError(f"{config}: no such config file or preset (presets: {', '.join(known)})")
        config = known[str(config)]
    return TrainConfig.from_file(config, list(overrides))
