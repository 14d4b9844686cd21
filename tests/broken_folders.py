"""Broken model folders for tests/inference/test_broken_folders.py and tests/cli/test_errors.py, and a full disk.

Each is a copy of a tiny valid model folder with one thing damaged, as a
careless copy, a hand edit or a hostile upload leaves it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from korpair.errors import KorpairError


def edit_config(change):
    def mutate(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
    return mutate


def set_labels(*names):
    def change(config):
        config["id2label"] = {str(i): n for i, n in enumerate(names)}
        config["label2id"] = {n: i for i, n in enumerate(names)}
    return change


def set_section(key, value):
    return edit_config(lambda config: config["korpair"].__setitem__(key, value))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def pickle_weights(folder: Path) -> None:
    """A pytorch_model.bin whose unpickling would run code (it would create a marker file)."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(folder.parent / "PAYLOAD_RAN"),))

    (folder / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": Payload()}, folder / "pytorch_model.bin")


def remove_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)


# name -> (damage, the file the message must name, a word it must hold)
BROKEN = {
    "truncated safetensors": (lambda f: truncate(f / "model.safetensors"), "model.safetensors", "truncated"),
    "pickle weights": (pickle_weights, "pytorch_model.bin", "safetensors"),
    "no tokenizer": (remove_tokenizer, "", "tokenizer"),
    "garbage tokenizer.json": (lambda f: (f / "tokenizer.json").write_text("garbage{"), "tokenizer.json", "JSON"),
    "truncated tokenizer.json": (lambda f: truncate(f / "tokenizer.json"), "tokenizer.json", "JSON"),
    "garbage config.json": (lambda f: (f / "config.json").write_text('{"model_type": "bert",'), "config.json",
                            "JSON"),
    "id2label too short": (edit_config(set_labels("yes", "no")), "config.json", "id2label"),
    "id2label too long": (edit_config(set_labels("a", "b", "c", "d", "e")), "config.json", "id2label"),
    "id2label with a gap": (edit_config(lambda c: c.__setitem__(
        "id2label", {"0": "entailment", "1": "neutral", "3": "contradiction"})), "config.json", "id2label"),
    "negative max_seq_length": (set_section("max_seq_length", -5), "config.json", "max_seq_length"),
    "fractional max_seq_length": (set_section("max_seq_length", 12.5), "config.json", "max_seq_length"),
    "text max_seq_length": (set_section("max_seq_length", "64"), "config.json", "max_seq_length"),
    "section labels not id2label": (set_section("labels", ["x", "y", "z"]), "config.json", "labels"),
    "newer section format": (set_section("format_version", 99), "config.json", "format_version"),
    "section not an object": (edit_config(lambda c: c.__setitem__("korpair", [1, 2])), "config.json", "korpair"),
}
# What a training run reads of a base model: its labels, head and section are replaced.
BROKEN_FOR_TRAINING = ("truncated safetensors", "pickle weights", "no tokenizer", "garbage tokenizer.json",
                       "truncated tokenizer.json", "garbage config.json")


def broken_copy(tiny_model_dir: Path, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    BROKEN[name][0](folder)
    return folder


def assert_names(err: KorpairError, folder: Path, name: str) -> None:
    _, file, word = BROKEN[name]
    message = str(err)
    assert str(folder / file).rstrip("/") in message and word.lower() in message.lower(), message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def fail_on_call(n: int, real):
    """A stand-in for ``real`` whose ``n``-th call (1-based) finds the disk full."""
    calls = []

    def call(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            no_space()
        return real(*args, **kwargs)
    return call


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


