"""Built-in corpora: where their files come from, fetching them once, and checking them.

Example::

    files = fetch_corpus("klue-nli")            # downloads what is missing (pooch), checks sha256
    files["validation"]                          # [PosixPath('~/.cache/korpair/corpora/klue-nli/...')]
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
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
    """A corpus korpair knows how to fetch: its files per split, labels, text and label columns, and licence."""

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
    """Where a built-in corpus's files go by default: ``korpair_home()/corpora/NAME``."""
    return korpair_home() / "corpora" / name


def sample_corpus_dir() -> Path:
    """The folder of the small Korean NLI corpus shipped with korpair."""
    return Path(str(resources.files("korpair") / "resources" / "sample_nli"))


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_corpus(name: str, data_dir: Path | None = None, splits: Sequence[str] | None = None,
                 download: bool = True, retries: int = 3) -> dict[str, list[Path]]:
    """Make sure a built-in corpus's files are in ``data_dir``; download the missing ones.

    Each file is tried at its mirrors in order, each ``retries`` times, and checked
    against its sha256 where one is published. Returns the local files of each
    split. With no network (or ``download=False``) the error lists the files to
    fetch by hand and where to put them.
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
            except _Unreachable as err:  # no mirror answered: the other files would wait for nothing too
                failures.append(str(err))
                break
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
    """Fetch one file through pooch, mirror after mirror; it appears at ``target`` whole and checked, or not at all."""
    import requests

    errors, unreachable = [], 0
    for url in remote.urls:
        log.info("downloading %s", url)
        try:
            # Everything lands in a temporary folder beside the target first, so the rename is atomic.
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
                fetched = _fetch(url, remote, Path(tmp), retries)
                problem = _problem(fetched, remote)
                if problem:
                    raise DownloadError(problem)
                # pooch writes through NamedTemporaryFile (0600): give the file the mode open() would
                os.chmod(fetched, 0o666 & ~_umask())
                os.replace(fetched, target)
            return
        except DownloadError as err:
            errors.append(f"{url}: {err}")
        except ValueError as err:  # pooch's sha256 check failed on every try (or pooch refused the url)
            reason = f"checksum mismatch (expected sha256 {remote.sha256})" if "hash" in str(err) else str(err)
            errors.append(f"{url}: {reason}")
        except requests.ConnectionError as err:
            # requests wraps the cause in two pool messages; the innermost says it (e.g. "Failed to resolve ...")
            cause = getattr(err.args[0], "reason", err) if err.args else err
            errors.append(f"{url}: cannot connect: {str(cause).split(': ', 1)[-1]}")
            unreachable += 1
        except (OSError, tarfile.TarError) as err:  # requests' other errors (e.g. HTTP 404) are OSErrors too
            errors.append(f"{url}: {err}")
    error = _Unreachable if unreachable == len(remote.urls) else DownloadError
    raise error(f"could not download {remote.filename}: " + "; ".join(errors))


class _Unreachable(DownloadError):
    """No mirror of a file could be reached at all (offline, or a firewall)."""


def _fetch(url: str, remote: RemoteFile, folder: Path, retries: int) -> Path:
    import pooch

    archived = remote.member is not None and url.endswith(".tar.gz")
    name = "archive.tar.gz" if archived else remote.filename
    # An archive's digest is unknown (only its member's is published): the member is checked after extraction.
    known_hash = None if archived or remote.sha256 is None else f"sha256:{remote.sha256}"
    fetcher = pooch.create(path=folder, base_url="", registry={name: known_hash}, urls={name: url},
                           retry_if_failed=retries - 1)
    downloader = pooch.HTTPDownloader(timeout=60, progressbar=False)
    with _quiet(pooch.get_logger()):
        if not archived:
            return Path(fetcher.fetch(name, downloader=downloader))
        fetcher.fetch(name, processor=pooch.Untar(members=[remote.member], extract_dir="extracted"),
                      downloader=downloader)
    member = folder / "extracted" / remote.member
    if not member.is_file():
        raise DownloadError(f"the archive has no {remote.member}")
    return member


@contextmanager
def _quiet(logger: logging.Logger):
    # pooch logs every download and retry at INFO on its own handler; korpair says what it downloads itself,
    # so pooch speaks only where korpair's own logging asks for detail (``korpair -v``).
    level = logger.level
    logger.setLevel(logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _problem(path: Path, remote: RemoteFile) -> str | None:
    if path.stat().st_size == 0:
        return "empty file"
    if remote.sha256 and sha256_file(path) != remote.sha256:
        return f"checksum mismatch (expected sha256 {remote.sha256})"
    return None


def _verify(path: Path, remote: RemoteFile) -> None:
    problem = _problem(path, remote)
    if problem:
        raise DownloadError(f"{path}: {problem}; delete it to download it again")


def _umask() -> int:
    """The process's umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
