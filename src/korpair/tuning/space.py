"""What ``korpair tune`` searches: config keys and their ranges, read from a small YAML file.

Each key of ``params`` is a dotted config key; its value is a list of
choices, or a range ``{low, high}`` (``log: true`` samples on a log scale,
``step`` on a grid). Numbers of a range that are all integers give integers.
``pruner`` says when a trial that is doing worse than the others is stopped:
not before ``startup_trials`` trials have finished, and not before a trial's
``warmup_validations``-th validation. Without a file the defaults span the
settings of the published KLUE-NLI and KorNLI fine-tuning recipes (lr 1e-5 to
1e-4, batch 16 to 64, warmup 0 to 0.2, 3 to 5 epochs, weight decay 0 or
0.01) for a pretrained model, and a higher lr band with dropout for one
built from scratch.

Example (``space.yaml``)::

    params:
      optim.lr: {low: 1.0e-5, high: 1.0e-4, log: true}
      data.batch_size: [16, 32]
    pruner: {startup_trials: 2, warmup_validations: 1}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from korpair.config import TrainConfig
from korpair.errors import ConfigError, KorpairError

PRETRAINED = {
    "optim.lr": {"low": 1.0e-5, "high": 1.0e-4, "log": True},
    "data.batch_size": [16, 32, 64],
    "optim.warmup_ratio": [0.0, 0.1, 0.2],
    "trainer.max_epochs": [3, 4, 5],
    "optim.weight_decay": [0.0, 0.01],
}
FROM_SCRATCH = {
    "optim.lr": {"low": 1.0e-4, "high": 2.0e-3, "log": True},
    "data.batch_size": [16, 32, 64],
    "optim.warmup_ratio": [0.0, 0.1, 0.2],
    "optim.weight_decay": [0.0, 0.01, 0.1],
    "model.dropout": [0.0, 0.1, 0.2],
}
PRUNER = {"startup_trials": 2, "warmup_validations": 1}


@dataclass(frozen=True)
class SearchSpace:
    """The config keys a study varies (``{key: choices or range}``) and when it prunes."""

    params: dict[str, Any]
    pruner: dict[str, int] = field(default_factory=lambda: dict(PRUNER))

    def suggest(self, trial) -> list[str]:
        """Sample a value of each key for an Optuna ``trial``; returns them as ``key=value`` overrides."""
        overrides = []
        for key, spec in self.params.items():
            if isinstance(spec, list):
                value = trial.suggest_categorical(key, spec)
            elif _integers(spec):
                value = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1),
                                          log=spec.get("log", False))
            else:
                value = trial.suggest_float(key, spec["low"], spec["high"], step=spec.get("step"),
                                            log=spec.get("log", False))
            overrides.append(as_override(key, value))
        return overrides

    def to_yaml(self) -> str:
        return yaml.safe_dump({"params": self.params, "pruner": self.pruner}, sort_keys=False, allow_unicode=True)


def default_space(cfg: TrainConfig) -> SearchSpace:
    """The recipes' space for ``cfg``'s kind of model (pretrained, or built from scratch)."""
    return SearchSpace(dict(FROM_SCRATCH if cfg.model.from_scratch else PRETRAINED))


def load_space(path: str | Path | None, cfg: TrainConfig) -> SearchSpace:
    """Read a search-space file (``None``: the defaults for ``cfg``) and check every key and bound against
    ``cfg``; a mistake is a ``ConfigError`` naming the file and the key."""
    if path is None:
        space = default_space(cfg)
    else:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the search space ({err.strerror or err})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        space = parse_space(raw, str(path))
    _check_against(space, cfg, "search space" if path is None else str(path))
    return space


def parse_space(raw: Any, where: str) -> SearchSpace:
    """A search space from its YAML form (``raw``); mistakes are ``ConfigError``s naming ``where``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise ConfigError(f"{where}: a search space is a mapping with 'params': {{config key: choices or "
                          f"{{low, high}}}}, e.g. params: {{optim.lr: {{low: 1.0e-5, high: 1.0e-4, log: true}}}}")
    unknown = set(raw) - {"params", "pruner"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a search space has params and "
                          f"pruner")
    for key, spec in raw["params"].items():
        _check_spec(key, spec, where)
    pruner = {**PRUNER, **(raw.get("pruner") or {})}
    bad = {k: v for k, v in pruner.items() if k not in PRUNER or not isinstance(v, int) or v < 0}
    if bad:
        raise ConfigError(f"{where}: pruner: {bad} not understood; it takes startup_trials and warmup_validations, "
                          f"each a whole number >= 0")
    return SearchSpace(dict(raw["params"]), pruner)


def _check_spec(key: str, spec: Any, where: str) -> None:
    if isinstance(spec, list):
        if not spec or len(set(map(repr, spec))) != len(spec):
            raise ConfigError(f"{where}: params.{key}: a list of choices needs at least one value, each once")
        if not all(isinstance(v, (bool, int, float, str)) or v is None for v in spec):
            raise ConfigError(f"{where}: params.{key}: choices are plain values (numbers, text, true/false, null)")
        return
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log", "step"}:
        raise ConfigError(f"{where}: params.{key}: give a list of choices or a range {{low, high}} with optional "
                          f"log: true or step, got {spec!r}")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise ConfigError(f"{where}: params.{key}: needs numbers low < high, got low={low!r}, high={high!r}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: params.{key}: a log range needs low > 0, got {low!r}")
    if spec.get("log") and spec.get("step") is not None:
        raise ConfigError(f"{where}: params.{key}: log and step do not go together (Optuna samples one or the other)")


def _check_against(space: SearchSpace, cfg: TrainConfig, where: str) -> None:
    """Every key must be a config key, and each choice and each end of a range a value it accepts."""
    for key, spec in space.params.items():
        if key.startswith("trainer.output_dir") or key == "trainer.seed":
            raise ConfigError(f"{where}: params.{key}: each trial has its own output folder and the study's seed; "
                              f"this key is not searched")
        values = spec if isinstance(spec, list) else [spec["low"], spec["high"]]
        for value in values:
            try:
                cfg.with_overrides([as_override(key, value)])
            except KorpairError as err:
                detail = str(err).splitlines()[-1].strip()
                raise ConfigError(f"{where}: params.{key}: {value!r} is not a value of this config key ({detail})") \
                    from None


def _integers(spec: dict) -> bool:
    return all(isinstance(spec.get(k, 1), int) and not isinstance(spec.get(k), bool) for k in ("low", "high", "step"))


def as_override(key: str, value: Any) -> str:
    """``key=value`` as an override, the value written so that YAML reads it back as it is."""
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
