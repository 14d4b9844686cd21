"""Built-in corpora: where their files come from, fetching them once, and checking them.

Example::

    files = fetch_corpus("klue-nli")            # downloads what is missing (pooch), checks sha256
    files["validation"]                          # [PosixPath('~/.cache/korpair/corpora/klue-nli/...')]
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from korpair.config import korpair_home
from korpair.errors import DownloadError
from korpair.types import NLI_LABELS, TASKS

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
    """A corpus korpair knows how to fetch: its files per split, target, text and label columns, and licence.

    A classification corpus declares its ``labels``; a regression corpus (one
    similarity score per pair) has none and declares its ``score_range``.
    """

    name: str
    splits: dict[str, tuple[RemoteFile, ...]]
    labels: tuple[str, ...]
    columns: tuple[str, str, str]
    homepage: str
    license: str
    task: str = "classification"  # or "regression": one score per pair
    score_range: tuple[float, float] | None = None  # of a regression corpus's scores
    drop_empty: bool = False  # rows with an empty text are dropped and counted, not an error
    drop_texts: tuple[str, ...] = ()  # placeholder texts (not sentences) whose rows are dropped and counted

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task {self.task!r} is not one of {TASKS}")
        regression = self.task == "regression"
        if regression == bool(self.labels) or regression != (self.score_range is not None):
            raise ValueError(f"{self.name}: a classification corpus has labels, a regression one a score range")


# KLUE's official downloads: one aistages competition archive per task, and the same files in the KLUE repo.
_KLUE_COMPETITIONS = {"klue-nli": "000068", "klue-sts": "000067"}
_KORNLU_RAW = "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/master/"
_KORNLU_GH = "https://github.com/kakaobrain/kor-nlu-datasets/raw/master/"
# PAWS-X has one official download: all six languages in one archive (google-research-datasets/paws, pawsx/).
_PAWSX_TAR = "https://storage.googleapis.com/paws/pawsx/x-final.tar.gz"


def _klue(task: str, name: str, sha: str | None) -> RemoteFile:
    folder = f"{task}-v1.1"
    archive = (f"https://aistages-prod-server-public.s3.amazonaws.com/app/Competitions/"
               f"{_KLUE_COMPETITIONS[task]}/data/{folder}.tar.gz")
    raw = f"https://raw.githubusercontent.com/KLUE-benchmark/KLUE/main/klue_benchmark/{folder}/{name}"
    return RemoteFile(name, (archive, raw), sha, member=f"{folder}/{name}")


def _kornlu(folder: str, name: str, sha: str | None) -> RemoteFile:
    return RemoteFile(name, (f"{_KORNLU_RAW}{folder}/{name}", f"{_KORNLU_GH}{folder}/{name}"), sha)


def _pawsx(name: str) -> RemoteFile:
    # No digest of the Korean files is published (only the whole archive's, on third-party mirrors).
    return RemoteFile(name, (_PAWSX_TAR,), None, member=f"x-final/ko/{name}")


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "klue-nli": BuiltinCorpus(
        name="klue-nli",
        splits={
            "train": (_klue("klue-nli", "klue-nli-v1.1_train.json", None),),
            # KLUE publishes no test labels: its dev set is the usual validation set.
            "validation": (
                _klue(
                    "klue-nli",
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
            "train": (_kornlu("KorNLI", "multinli.train.ko.tsv", None),
                      _kornlu("KorNLI", "snli_1.0_train.ko.tsv", None)),
            "validation": (
                _kornlu(
                    "KorNLI", "xnli.dev.ko.tsv", "821fb1c1c2e538ac2724a6132da36ffa379eb9a542ceb89243b3cf711377382c"
                ),
            ),
            "test": (_kornlu("KorNLI", "xnli.test.ko.tsv", None),),
        },
        labels=NLI_LABELS,
        columns=("sentence1", "sentence2", "gold_label"),
        homepage="https://github.com/kakaobrain/KorNLUDatasets",
        license="CC BY-SA 4.0",
    ),
    # Kakao Brain's translation of STS-B: columns genre, filename, year, id, score, sentence1, sentence2;
    # the sentences hold quote characters (the TSV reader keeps them: no CSV quoting).
    "korsts": BuiltinCorpus(
        name="korsts",
        splits={
            "train": (_kornlu("KorSTS", "sts-train.tsv",
                              "b5aaa7f957d6ff46f4b6834a8b0f024a9234a6eefe9289aed66746b4533da3b8"),),
            "validation": (_kornlu("KorSTS", "sts-dev.tsv",
                                   "d835b65b424401fbcce6be28a78159df8d61f5b19977ea7a0b83b8cb6105f393"),),
            "test": (_kornlu("KorSTS", "sts-test.tsv",
                             "13f83a3440d9db52d134eb40303ce021b03264aa338fbf2871c8786ce04d2105"),),
        },
        labels=(),
        columns=("sentence1", "sentence2", "score"),
        homepage="https://github.com/kakaobrain/KorNLUDatasets",
        license="CC BY-SA 4.0",
        task="regression",
        score_range=(0.0, 5.0),
    ),
    # Each row's "labels" object holds "label" (the annotators' mean score rounded to 0.1: korpair's target),
    # "real-label" (the unrounded mean) and "binary-label" (label >= 3.0, which KLUE's F1 is computed on).
    "klue-sts": BuiltinCorpus(
        name="klue-sts",
        splits={
            "train": (_klue("klue-sts", "klue-sts-v1.1_train.json", None),),
            # As for KLUE-NLI: no public test labels, the dev set is the validation set.
            "validation": (_klue("klue-sts", "klue-sts-v1.1_dev.json", None),),
        },
        labels=(),
        columns=("sentence1", "sentence2", "labels.label"),
        homepage="https://klue-benchmark.com",
        license="CC BY-SA 4.0",
        task="regression",
        score_range=(0.0, 5.0),
    ),
    # PAWS-X Korean: label 1 = paraphrase, 0 = not. The training pairs are machine-translated and some
    # translations failed and were left blank (rows like "id<TAB><TAB><TAB>0"; google-research-datasets/paws
    # issue 4), so rows with an empty text are dropped and counted rather than stopping the run. The human-
    # translated dev/test sets instead hold a few "NS" placeholders (issue 15): the official counts (1,965 dev
    # and 1,972 test pairs of 2,000) leave them out, so they are dropped and counted too.
    "paws-x-ko": BuiltinCorpus(
        name="paws-x-ko",
        splits={
            "train": (_pawsx("translated_train.tsv"),),
            "validation": (_pawsx("dev_2k.tsv"),),
            "test": (_pawsx("test_2k.tsv"),),
        },
        labels=("0", "1"),
        columns=("sentence1", "sentence2", "label"),
        homepage="https://github.com/google-research-datasets/paws/tree/master/pawsx",
        license="free for any purpose, acknowledging Google LLC as the source (PAWS licence)",
        drop_empty=True,
        drop_texts=("NS",),
    ),
}


def default_data_dir(name: str) -> Path:
    """Where a built-in corpus's files go by default: ``korpair_home()/corpora/NAME``."""
    return korpair_home() / "corpora" / name


# Corpora shipped inside the package: name -> folder under korpair/resources.
EMBEDDED_CORPORA = {"sample": "sample_nli", "demo": "demo_nli"}


def embedded_corpus_dir(name: str = "sample") -> Path:
    """The folder of a Korean NLI corpus shipped with korpair: ``sample`` (900 training pairs, for tests and
    smoke runs) or ``demo`` (24,000 generated pairs that a model built from scratch learns from)."""
    return Path(str(resources.files("korpair") / "resources" / EMBEDDED_CORPORA[name]))


sample_corpus_dir = embedded_corpus_dir  # its name in korpair 0.1, when the sample was the only one


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
        # One scratch folder for the whole fetch, so an archive that holds several of the files (PAWS-X's
        # train/dev/test) is downloaded once; it goes, with anything half-fetched, when the fetch ends.
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".download.") as scratch:
            for remote in missing:
                try:
                    _download(remote, data_dir / remote.filename, retries, Path(scratch))
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
        inside = f"  (extract {r.member})" if _archived(src, r) else ""
        lines.append(f"  {r.filename}  <-  {src}{inside}")
    return "\n".join(lines)


def _archived(url: str, remote: RemoteFile) -> bool:
    """Whether ``url`` is an archive that holds ``remote`` (its member), rather than the file itself."""
    return remote.member is not None and url.endswith(".tar.gz")


def _download(remote: RemoteFile, target: Path, retries: int, scratch: Path) -> None:
    """Fetch one file through pooch, mirror after mirror; it appears at ``target`` whole and checked, or not at all.

    Everything lands in ``scratch`` (beside the target, so the rename is atomic)
    first, in one folder per url: an archive fetched for one file serves the
    next file it holds, and a url that failed leaves nothing there.
    """
    import requests

    errors, unreachable = [], 0
    for url in remote.urls:
        folder = scratch / hashlib.sha256(url.encode()).hexdigest()[:16]
        if not (_archived(url, remote) and folder.is_dir()):
            log.info("downloading %s", url)
        try:
            fetched = _fetch_checked(url, remote, folder, retries)
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


def _fetch_checked(url: str, remote: RemoteFile, folder: Path, retries: int) -> Path:
    """The file from ``url``, checked; on any failure ``folder`` is removed, archive and all."""
    try:
        fetched = _fetch(url, remote, folder, retries)
        problem = _problem(fetched, remote)
        if problem:
            raise DownloadError(problem)
        return fetched
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _fetch(url: str, remote: RemoteFile, folder: Path, retries: int) -> Path:
    import pooch

    archived = _archived(url, remote)
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
