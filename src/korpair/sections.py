"""The five sections of a training config, each a typed, validated pydantic model.

``korpair.config`` puts them together as ``TrainConfig`` and reads them from
files and ``key=value`` overrides; this module holds what each key means, its
default, its bounds and its CLI aliases, and the rules within a section.

>>> CorpusConfig(name="korsts").known_task
'regression'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from korpair.types import TRACKERS, TRAIN_PRECISIONS

# What each built-in corpus trains; korpair.corpora.builtin holds their files, labels and score ranges.
BUILTIN_TASKS = {"sample": "classification", "demo": "classification", "klue-nli": "classification",
                 "kornli": "classification", "korsts": "regression", "klue-sts": "regression",
                 "paws-x-ko": "classification"}
# The validation metrics each task reports, any of which can pick the best checkpoint; the first is the default.
MONITORS = {"classification": ("val_accuracy", "val_macro_f1", "val_f1", "val_loss"),
            "regression": ("val_spearman", "val_pearson", "val_mse", "val_mae", "val_loss")}
LOWER_IS_BETTER = ("val_loss", "val_mse", "val_mae")

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

    name: Literal["sample", "demo", "klue-nli", "kornli", "korsts", "klue-sts", "paws-x-ko", "files"] = Field(
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
    soft_labels: bool = Field(
        False, description="train on the annotators' vote distribution (cross-entropy against it) where pairs have "
        "votes; the gold label still defines accuracy and picks the best checkpoint")
    vote_columns: tuple[str, ...] | None = Field(
        None, description="columns holding one annotator's label each; default: KLUE-NLI's author, label2..label5 "
        "where a file has them")

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
        if (self.soft_labels or self.vote_columns) and self.known_task == "regression":
            raise ValueError("corpus.soft_labels and corpus.vote_columns apply to classification (annotators' "
                             "labels); this corpus is regression")
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
        "faster than in fp32 (a GPU with bf16; a CPU with AVX512-BF16 or AMX where a timed matrix product says so), "
        "else 32", json_schema_extra=_cli("--precision"))
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
    calibrate: bool = Field(
        True, description="after training, fit a temperature (classification) or an affine map of the score "
        "(regression) on the validation split and store it in the model folder; predictions apply it unless "
        "asked not to")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many validations without improvement")
    accelerator: str = Field("auto", description="cpu, gpu, mps or auto", json_schema_extra=_cli("--accelerator"))
    devices: int | str = Field("auto", description="number of devices, or 'auto'",
                               json_schema_extra=_cli("--devices"))
    num_nodes: int = Field(1, ge=1, description="machines taking part (DDP)", json_schema_extra=_cli("--num-nodes"))
    strategy: str = Field("auto", description="auto, ddp, fsdp, deepspeed ... (passed to Lightning)",
                          json_schema_extra=_cli("--strategy"))
    log_every_n_steps: int = Field(10, ge=1, description="log training loss and lr every N steps")
    loggers: tuple[Literal[TRACKERS], ...] = Field(
        ("csv", "tensorboard"), description="where curves, the config and final metrics go (Lightning's "
        "loggers): csv, tensorboard, mlflow, wandb; the csv log is always kept (training_curves.png and resumed "
        "runs read it)", json_schema_extra=_cli("--loggers"))
    experiment: str | None = Field(
        None, description="MLflow experiment / W&B project; default: $MLFLOW_EXPERIMENT_NAME / $WANDB_PROJECT, "
        "else 'korpair'")
    run_name: str | None = Field(None, description="the run's name in MLflow / W&B; default: the output "
                                                   "folder's name")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (sqlite:///mlflow.db, http://host:5000); default: "
        "$MLFLOW_TRACKING_URI, else MLflow's own (sqlite:///mlflow.db in the working folder)")
    progress_bar: bool = Field(True, description="show a progress bar")
    deterministic: bool = Field(False, description="ask torch for deterministic algorithms")

    @field_validator("loggers")
    @classmethod
    def _each_logger_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"names {', '.join(twice)} more than once")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        # YAML and ``trainer.precision=32`` give the number 32; Lightning's names are text
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def check_monitor(monitor: str, task: str) -> None:
    """Refuse a ``trainer.monitor`` that a run of ``task`` does not report."""
    if monitor != "auto" and monitor not in MONITORS[task]:
        raise ValueError(f"trainer.monitor={monitor!r} is not reported by {task}; it reports "
                         f"{', '.join(MONITORS[task])} (or auto)")


