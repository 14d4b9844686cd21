"""The model-folder contract: what korpair needs to use a model lives in the Hugging Face folder itself.

A korpair model folder is a plain Hugging Face folder whose ``config.json``
holds a ``korpair`` section (format version, task, labels, trained max length,
korpair version, training corpus, best validation metrics). Folders written by
korpair 0.1 kept the run config in a side file, ``korpair_train.yaml``; they
still load: the section is then read from that file.

>>> read_section("no/such/folder")
{}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from korpair.config import RUN_CONFIG_NAME

SECTION = "korpair"  # the key of korpair's section in config.json
FORMAT_VERSION = 1  # bump when the section's meaning changes


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


def trained_max_length(folder: str | Path) -> int | None:
    """Tokens per pair the model was trained with, where the folder records it."""
    value = read_section(folder).get("max_seq_length")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
