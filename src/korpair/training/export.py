"""Save a trained model as a plain Hugging Face folder that carries its own korpair facts.

The folder holds safetensors weights, the tokenizer (its ``model_max_length``
set to the trained max length), ``config.json`` with the labels and the
``korpair`` section (``korpair.model_folder``), and a model card, ``README.md``.

Example::

    export_model(task.model, tokenizer, Path("runs/klue/model"), cfg, metrics={"val_accuracy": 0.81})
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from korpair.atomic import write_dir
from korpair.config import TrainConfig
from korpair.errors import disk_full_as_error
from korpair.model_card import model_card
from korpair.model_folder import CARD_NAME, SECTION, build_section
from korpair.types import LabelMap, ScoreRange, Target


def export_model(model, tokenizer, folder: Path, cfg: TrainConfig | None = None, *,
                 metrics: Mapping[str, Any] | None = None, precision: str | None = None,
                 target: Target | None = None, calibration: Mapping[str, Any] | None = None) -> Path:
    """Save a standard Hugging Face folder atomically (safetensors weights) with its section and card.

    ``cfg`` is the run's config (``None`` for a model built outside a run: no
    max length, corpus or recipe is recorded then); ``metrics`` the best
    checkpoint's validation metrics; ``precision`` the one training ran in.
    ``target`` is what the model predicts (the run's ``LabelMap`` or
    ``ScoreRange``); default: the model config's ``id2label``, or an open score
    range for a regression model. ``calibration`` is what ``fit_calibration``
    fitted (``None``: the model's raw scores are its answers). On a full disk it raises a
    ``DiskFullError`` naming ``folder``, whose previous content is left as it was.
    """
    folder = Path(folder)
    if target is None:
        regression = getattr(model.config, "problem_type", None) == "regression"
        target = ScoreRange() if regression else LabelMap(
            tuple(model.config.id2label[i] for i in range(model.config.num_labels)))
    section = build_section(cfg, target, metrics, precision, calibration)
    title = (folder.parent.name if folder.name == "model" and folder.parent.name else folder.name) or "model"
    card = model_card(section, model_ref=str(folder), title=title)
    saved_tokenizer = tokenizer
    if cfg is not None:
        # a copy: the caller's tokenizer keeps its own limit
        saved_tokenizer = copy.deepcopy(tokenizer)
        saved_tokenizer.model_max_length = cfg.data.max_seq_length

    def fill(tmp: Path) -> None:
        # A config attribute goes into config.json and survives from_pretrained/save_pretrained, as
        # sentence-transformers keeps its section; a base model that was a korpair folder brings an old
        # section, which is put back afterwards.
        before = getattr(model.config, SECTION, None)
        setattr(model.config, SECTION, section)
        try:
            model.save_pretrained(tmp, safe_serialization=True)
        finally:
            if before is None:
                delattr(model.config, SECTION)
            else:
                setattr(model.config, SECTION, before)
        saved_tokenizer.save_pretrained(tmp)
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")

    with disk_full_as_error(folder):
        write_dir(folder, fill)
    return folder
