"""Publishing on the Hub (`korpair push`, `korpair.push_to_hub`): everything up to the upload is checked offline,
and the upload is one `HfApi.upload_folder` call with what the dry run lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import korpair
from korpair import api
from korpair.cli import app
from korpair.errors import ConfigError, ModelFolderError

runner = CliRunner()


@pytest.fixture
def model(tiny_model_dir, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def files_on_disk(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_a_dry_run_lists_the_folder_with_its_onnx_export_and_leaves_out_hidden_leftovers(model):
    api.export(model)  # writes model/onnx
    expected = files_on_disk(model)
    # what an interrupted korpair write and other tools leave behind (korpair.atomic names its own hidden)
    (model / ".model.safetensors.123@host.0badc0de.tmp").write_bytes(b"half")
    (model / ".cache").mkdir()
    (model / ".cache" / "x").write_text("x")
    (model / "__pycache__").mkdir()
    (model / "__pycache__" / "m.pyc").write_bytes(b"x")
    plan = korpair.push_to_hub(model, "me/tiny", dry_run=True)
    assert {f.path: f.size for f in plan.files} == expected
    assert {"README.md", "config.json", "model.safetensors", "onnx/model.onnx"} <= set(expected)
    assert plan.total_bytes == sum(expected.values())
    assert plan.url is None


def test_the_card_metadata_is_read_as_the_hub_reads_it(model):
    meta = korpair.push_to_hub(model, "me/tiny", dry_run=True).card_metadata
    assert meta["language"] == "ko" and meta["library_name"] == "transformers"
    assert "korpair" in meta["tags"]


@pytest.mark.parametrize("card, problem", [
    (None, "no model card"),
    ("---\nlicense: [other\n---\n# card\n", "cannot read"),
    ("---\nlanguage: ko\n---\n# card\n", "lacks license"),
])
def test_a_card_the_hub_cannot_use_is_refused(model, card, problem):
    if card is None:
        (model / "README.md").unlink()
    else:
        (model / "README.md").write_text(card, encoding="utf-8")
    with pytest.raises(ModelFolderError, match=problem) as err:
        korpair.push_to_hub(model, "me/tiny", dry_run=True)
    assert "README.md" in str(err.value)


@pytest.mark.parametrize("repo_id", ["tiny", "bad id!", "a/b/c", "-me/x"])
def test_a_repo_id_the_hub_would_reject_is_refused_first(model, repo_id):
    with pytest.raises(ConfigError, match="repo id"):
        korpair.push_to_hub(model, repo_id, dry_run=True)


def test_a_damaged_model_folder_is_not_published(model):
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFolderError, match="model.safetensors"):
        korpair.push_to_hub(model, "me/tiny", dry_run=True)


class FakeHfApi:
    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        return type("CommitInfo", (), {"commit_url": "https://huggingface.co/me/tiny/commit/abc"})()


def test_the_upload_sends_what_the_dry_run_lists_in_one_upload_folder_call(model, monkeypatch):
    import huggingface_hub

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    listed = [f.path for f in korpair.push_to_hub(model, "me/tiny", dry_run=True).files]
    plan = korpair.push_to_hub(model, "me/tiny", private=True, revision="v1", token="hf_x")
    assert FakeHfApi.calls[:3] == [("init", "hf_x"), ("create_repo", "me/tiny", {"private": True, "exist_ok": True}),
                                   ("create_branch", "me/tiny", {"branch": "v1", "exist_ok": True})]
    (name, kw), = FakeHfApi.calls[3:]
    assert name == "upload_folder"
    assert kw["repo_id"] == "me/tiny" and kw["revision"] == "v1" and Path(kw["folder_path"]) == model
    assert kw["allow_patterns"] == listed
    assert plan.url == "https://huggingface.co/me/tiny/commit/abc"


def test_no_token_is_a_clear_error_before_the_network(model, monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    with pytest.raises(ConfigError, match="no Hugging Face token"):
        korpair.push_to_hub(model, "me/tiny")
    assert FakeHfApi.calls == []


def test_the_command_lists_the_files_and_exits_2_on_errors(model, monkeypatch):
    import huggingface_hub

    result = runner.invoke(app, ["push", str(model), "me/tiny", "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "model.safetensors" in result.output and "nothing sent" in result.output
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    result = runner.invoke(app, ["push", str(model), "me/tiny"], env={"COLUMNS": "200", "HF_TOKEN": ""})
    assert result.exit_code == 2 and "no Hugging Face token" in result.output
    result = runner.invoke(app, ["push", str(model), "tiny", "--dry-run"])
    assert result.exit_code == 2 and "OWNER/NAME" in result.output
