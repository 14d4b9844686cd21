"""Publishing a model folder on the Hugging Face Hub: what would be sent, checked before anything is sent.

The upload itself is ``huggingface_hub``'s ``HfApi.upload_folder``; this module decides what goes (the
model folder with its model card, and the ONNX folders exported inside it) and refuses what would make a
broken or unreadable repository: a damaged model folder, a model card whose metadata the Hub cannot read,
a repository id the Hub would reject, no token.

Example::

    plan = push_to_hub("runs/demo/model", "me/korpair-demo", dry_run=True)
    [f.path for f in plan.files]     # ['README.md', 'config.json', 'model.safetensors', ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from korpair.atomic import recover_dir
from korpair.errors import ConfigError, ModelFolderError
from korpair.model_folder import CARD_NAME, check_model_folder


@dataclass(frozen=True)
class HubFile:
    path: str  # in the repository, with forward slashes
    size: int  # bytes


@dataclass(frozen=True)
class PushPlan:
    """What a push sends (or, with ``dry_run``, would send), and where."""

    repo_id: str
    folder: Path
    files: tuple[HubFile, ...]
    card_metadata: dict = field(default_factory=dict)
    private: bool = False
    revision: str | None = None
    url: str | None = None  # the commit's address, once pushed

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def push_to_hub(model_dir: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                token: str | None = None, dry_run: bool = False,
                commit_message: str = "Upload korpair model") -> PushPlan:
    """Upload a korpair model folder to the Hugging Face Hub, creating the repository if needed.

    ``revision`` is a branch (created from the default branch if it does not
    exist). ``token`` defaults to the one ``huggingface_hub`` finds (``HF_TOKEN``
    or a saved login). ``dry_run`` checks everything and returns the plan
    without touching the network.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"repo id {repo_id!r}: {err}") from None
    if "/" not in repo_id:
        raise ConfigError(f"repo id {repo_id!r}: give it as OWNER/NAME (your user name or an organisation)")
    folder = Path(model_dir)
    recover_dir(folder)  # a model swap that a killed process left half-done
    check_model_folder(folder)
    plan = PushPlan(repo_id=repo_id, folder=folder, files=_files(folder), card_metadata=_card_metadata(folder),
                    private=private, revision=revision)
    if dry_run:
        return plan
    return _upload(plan, token, commit_message)


def _files(folder: Path) -> tuple[HubFile, ...]:
    """Every file of the folder and its subfolders (the ONNX exports), but hidden ones: korpair's own
    half-written files and locks are hidden (``korpair.atomic``), and so are editors' and caches' leftovers."""
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or not path.is_file():
            continue
        found.append(HubFile(rel.as_posix(), path.stat().st_size))
    return tuple(found)


def _card_metadata(folder: Path) -> dict:
    """The model card's metadata as the Hub will read it; a card it cannot read is refused."""
    import yaml
    from huggingface_hub import ModelCard

    card_path = folder / CARD_NAME
    if not card_path.is_file():
        raise ModelFolderError(f"{card_path}: no model card; the Hub shows a repository without one as empty "
                               "(korpair writes it when it saves a model)")
    try:
        card = ModelCard(card_path.read_text(encoding="utf-8"))
        data = card.data.to_dict()
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ModelFolderError(f"{card_path}: the Hub cannot read this model card's metadata: {err}") from None
    missing = [key for key in ("license", "language", "library_name", "pipeline_tag") if not data.get(key)]
    if missing:
        raise ModelFolderError(f"{card_path}: the card's metadata lacks {', '.join(missing)}")
    return data


def _upload(plan: PushPlan, token: str | None, commit_message: str) -> PushPlan:
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise ConfigError("no Hugging Face token: set HF_TOKEN, or log in once with `hf auth login` "
                          "(a token with write access, from https://huggingface.co/settings/tokens)")
    api = HfApi(token=token)
    api.create_repo(plan.repo_id, private=plan.private, exist_ok=True)
    if plan.revision:
        api.create_branch(plan.repo_id, branch=plan.revision, exist_ok=True)
    commit = api.upload_folder(folder_path=str(plan.folder), repo_id=plan.repo_id, revision=plan.revision,
                               commit_message=commit_message, allow_patterns=[f.path for f in plan.files])
    return replace(plan, url=commit.commit_url)
