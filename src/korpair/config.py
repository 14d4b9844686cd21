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
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError, model_validator

from korpair.errors import ConfigError
from korpair.sections import (  # noqa: F401 (the sections are korpair.config's public names too)
    BUILTIN_TASKS,
    LOWER_IS_BETTER,
    MONITORS,
    CorpusConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainerConfig,
    _Section,
    check_monitor,
    korpair_home,
)

# Saved in every run folder: the resolved config, read back by ``korpair train --resume``.
RUN_CONFIG_NAME = "korpair_train.yaml"


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
