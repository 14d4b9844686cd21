"""Built-in corpora: where their files come from, fetching them once, and checking them.

Example::

    files = fetch_corpus("klue-nli")            # downloads what is missing, checks sha256
    files["validation"]                          # [PosixPath('~/.cache/korpair/corpora/klue-nli/...')]
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from korpair.config import korpair_home
from korpair.errors import DownloadError
from korpair.types import NLI_LABELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a built-in corpus and the places it can be fetched from."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None  # None where no trusted digest is published; then size > 0 and parse are the check
    member: str | None = None  # path inside a .tar.gz, when the url is an archive


@dataclass(frozen=True)
class BuiltinCorpus:
    name: str
    splits: dict[str, tuple[RemoteFile, ...]]
    labels: tuple[str, ...]
    columns: tuple[str, str, str]
    homepage: str
    license: str


_KLUE_TAR = "https://aistages-prod-server-public.s3.amazonaws.com/app/Competitions/000068/data/klue-nli-v1.1.tar.gz"
_KLUE_RAW = "https://raw.githubusercontent.com/KLUE-benchmark/KLUE/main/klue_benchmark/klue-nli-v1.1/"
_KORNLI_RAW = "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/KorNLI/"
_KORNLI_GH = "https://github.com/kakaobrain/kor-nlu-datasets/raw/master/KorNLI/"


def _klue(name: str, sha: str | None) -> RemoteFile:
    return RemoteFile(name, (_KLUE_TAR, _KLUE_RAW + name), sha, member=f"klue-nli-v1.1/{name}")


def _kornli(name: str, sha: str | None) -> RemoteFile:
    return RemoteFile(name, (_KORNLI_RAW + name, _KORNLI_GH + name), sha)


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "klue-nli": BuiltinCorpus(
        name="klue-nli",
        splits={
            "train": (_klue("klue-nli-v1.1_train.json", None),),
            # KLUE publishes no test labels: its dev set is the usual validation set.
            "validation": (
                _klue(
                    "klue-nli-v1.1_dev.json",
                    "0699db82be17766b26e199864e6260443e17ec6e91d1870e876419e388f245b1",
                ),
            ),
        },
        labels=NLI_LABELS,
        columns=("premise", "hypothesis", "gold_label"),
        homepage="https://klue-benchmark.com",
        license="CC BY-SA 4.0",
    ),
    "kornli": BuiltinCorpus(
        name="kornli",
        splits={
            "train": (_kornli("multinli.train.ko.tsv", None), _kornli("snli_1.0_train.ko.tsv", None)),
            "validation": (
                _kornli(
                    "xnli.dev.ko.tsv", "821fb1c1c2e538ac2724a6132da36ffa379eb9a542ceb89243b3cf711377382c"
                ),
            ),
            "test": (_kornli("xnli.test.ko.tsv", None),),
        },
        labels=NLI_LABELS,
        columns=("sentence1", "sentence2", "gold_label"),
        homepage="https://github.com/kakaobrain/KorNLUDatasets",
        license="CC BY-SA 4.0",
    ),
}


def default_data_dir(name: str) -> Path:
    return korpair_home() / "corpora" / name


def sample_corpus_dir() -> Path:
    """The folder of the small Korean NLI corpus shipped with korpair."""
    return Path(str(resources.files("korpair") / "resources" / "sample_nli"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_corpus(name: str, data_dir: Path | None = None, splits: Sequence[str] | None = None,
                 download: bool = True, retries: int = 3) -> dict[str, list[Path]]:
    """Make sure a built-in corpus's files are in ``data_dir``; download the missing ones.

    Returns the local files of each split. With no network (or ``download=False``)
    the error lists the files to fetch by hand and where to put them.
    """
    corpus = BUILTIN_CORPORA[name]
    data_dir = Path(data_dir) if data_dir else default_data_dir(name)
    wanted = splits or list(corpus.splits)
    out: dict[str, list[Path]] = {}
    missing: list[RemoteFile] = []
    for split in wanted:
        out[split] = []
        for remote in corpus.splits[split]:
            local = data_dir / remote.filename
            out[split].append(local)
            if not local.is_file():
                missing.append(remote)
    if missing and download:
        data_dir.mkdir(parents=True, exist_ok=True)
        failures = []
        for remote in missing:
            try:
                _download(remote, data_dir / remote.filename, retries)
            except DownloadError as err:
                failures.append(str(err))
        if failures:
            raise DownloadError(
                "\n".join(failures) + "\n" + _manual_instructions(name, missing, data_dir)
            )
    elif missing:
        raise DownloadError(f"{name}: files missing and download is off.\n"
                            + _manual_instructions(name, missing, data_dir))
    for files in out.values():
        for local in files:
            _verify(local, next(r for s in corpus.splits.values() for r in s if r.filename == local.name))
    return out


def _manual_instructions(name: str, missing: Sequence[RemoteFile], data_dir: Path) -> str:
    lines = [f"Fetch these {name} files yourself and put them in {data_dir}/, or point data_dir= "
             "(config: corpus.data_dir=) at the folder that holds them:"]
    for r in missing:
        src = r.urls[-1] if r.member else r.urls[0]
        lines.append(f"  {r.filename}  <-  {src}")
    return "\n".join(lines)


def _download(remote: RemoteFile, target: Path, retries: int) -> None:
    errors = []
    for url in remote.urls:
        for attempt in range(retries):
            try:
                log.info("downloading %s (try %d)", url, attempt + 1)
                _download_once(url, remote, target)
                _verify(target, remote)
                return
            except (urllib.error.URLError, OSError, TimeoutError, tarfile.TarError) as err:
                errors.append(f"{url}: {err}")
                time.sleep(min(2**attempt, 8) if attempt + 1 < retries else 0)
            except DownloadError as err:  # checksum mismatch: try the next source, not the same one
                errors.append(str(err))
                target.unlink(missing_ok=True)
                break
    raise DownloadError(f"could not download {remote.filename}: " + "; ".join(errors[-3:]))


def _download_once(url: str, remote: RemoteFile, target: Path) -> None:
    # Write to a temporary file in the same folder, then rename: never a half file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            if url.endswith(".tar.gz") and remote.member:
                with tarfile.open(fileobj=resp, mode="r|gz") as tar:
                    for info in tar:
                        if info.name.lstrip("./") == remote.member and info.isfile():
                            shutil.copyfileobj(tar.extractfile(info), out)
                            break
                    else:
                        raise DownloadError(f"{url}: archive has no {remote.member}")
            else:
                shutil.copyfileobj(resp, out)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _verify(path: Path, remote: RemoteFile) -> None:
    if path.stat().st_size == 0:
        path.unlink()
        raise DownloadError(f"{path}: empty download")
    if remote.sha256 and sha256_file(path) != remote.sha256:
        raise DownloadError(
            f"{path}: checksum mismatch (expected sha256 {remote.sha256}); delete it and download again"
        )
