"""Save a trained model as a plain Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from korpair.atomic import write_dir
from korpair.config import RUN_CONFIG_NAME, TrainConfig


def export_model(model, tokenizer, folder: Path, cfg: TrainConfig | None = None) -> Path:
    """Save a standard Hugging Face folder atomically (safetensors weights)."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if cfg is not None:
            (tmp / RUN_CONFIG_NAME).write_text(cfg.to_yaml(), encoding="utf-8")

    write_dir(folder, fill)
    return folder
