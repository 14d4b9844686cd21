"""Write outputs so that a crash never leaves a half-written file or folder.

Everything is written under a temporary name in the same folder, flushed to
disk, then renamed over the target: readers see the old version or the new
one, never a mix. Files and folders are created as ``open`` and ``mkdir``
create them, so they follow the umask (0644/0755 under the usual 022).

A temporary name says whose it is and how far the write got:
``.NAME.PID@HOST.TOKEN.KIND``, KIND being ``tmp`` (being written), ``new``
(complete, about to be swapped in), ``old`` (the previous version, swapped
out) or ``del`` (the previous version, being deleted). A process killed
mid-write leaves such names behind; the next write of ``NAME``, or a reader
that calls ``recover_dir``, finishes or rolls back what it was doing and
removes the rest.

Example::

    write_text(Path("runs/x/metrics.json"), json.dumps({"accuracy": 0.9}))
    with open_atomic(Path("preds.jsonl")) as fh:
        fh.write("...")
    write_dir(Path("runs/x/model"), model.save_pretrained)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_OWNED = re.compile(r"\.(?P<pid>\d+)@(?P<host>.+)\.[0-9a-f]{8}\.(?P<kind>tmp|new|old|del)")
_OLD_01 = re.compile(r"\.(?P<pid>\d+)\.(?P<kind>old)")  # korpair 0.1's swapped-out folder: .NAME.PID.old
_ANY = re.compile(r"\.(?P<name>.+?)(?:\.\d+@.+\.[0-9a-f]{8}\.(?:tmp|new|old|del)|\.\d+\.old)")
# Another host's processes cannot be checked. Its swap leaves the target missing for microseconds,
# so a missing target with a leftover this old means that process died between its two renames.
FOREIGN_GRACE_S = 60.0


@contextlib.contextmanager
def open_atomic(path: Path, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = _temp_name(path, "tmp")
    # O_EXCL with 0o666 is how open() creates a file, umask included; mkstemp would force 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding,
                       newline=None if binary else newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with open_atomic(path) as fh:
        fh.write(text)


def write_dir(path: Path, fill: Callable[[Path], None]) -> None:
    """Build a folder with ``fill(tmp_dir)``, then swap it in for ``path``.

    If ``fill`` raises, the previous ``path`` is left exactly as it was. A
    kill at any moment leaves ``path`` old or new, or, between the swap's two
    renames, both versions under temporary names: the next ``write_dir`` or
    ``recover_dir`` of ``path`` then puts the new one in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = _temp_name(path, "tmp")
    os.mkdir(tmp)  # 0o777 less the umask, like any folder; mkdtemp would force 0700
    new = old = None
    try:
        fill(tmp)
        _settle_tree(tmp)
        new = _temp_name(path, "new")
        os.replace(tmp, new)  # complete from here on
        if os.path.lexists(path):
            old = _temp_name(path, "old")
            os.replace(path, old)
        os.replace(new, path)
        _fsync_dir(path.parent)
    except BaseException:
        if old is not None and not os.path.lexists(path):
            os.replace(old, path)
            old = None
        for leftover in (tmp, new, old):
            if leftover is not None:
                _remove(leftover)
        raise
    if old is not None:
        # renamed first, so that a kill during the deletion leaves nothing that looks restorable
        trash = _temp_name(path, "del")
        os.replace(old, trash)
        _remove(trash)


def write_figure(path: Path, fig) -> None:
    """Save a matplotlib figure as PNG atomically."""
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")


def recover_dir(path: Path) -> None:
    """Settle what killed processes left of a write of ``path`` (a folder or a file).

    If ``path`` is missing because its writer died between the two renames of
    a swap, the complete new version is put in place, else the old one. Every
    leftover of a dead process on this host is then removed; a live
    process's are kept. Errors (a read-only folder) are logged, never raised:
    readers call this before loading.

    Example::

        recover_dir(Path("runs/x/model"))   # before Predictor.from_pretrained("runs/x/model")
    """
    path = Path(path)
    try:
        _recover(path)
    except OSError as err:
        log.warning("%s: could not clean up after an interrupted write (%s)", path, err)


def recover_leftovers(folder: Path) -> None:
    """``recover_dir`` every name in ``folder`` that has leftovers of an interrupted write."""
    try:
        names = {m["name"] for entry in os.scandir(folder) if (m := _ANY.fullmatch(entry.name))}
    except OSError:
        return
    for name in sorted(names):
        recover_dir(Path(folder) / name)


@dataclass(frozen=True)
class _Leftover:
    path: Path
    pid: int
    host: str
    kind: str

    @property
    def owner(self) -> str:
        return f"process {self.pid} on {self.host}"


def _recover(path: Path) -> None:
    leftovers = _leftovers(path)
    if not leftovers:
        return
    host = socket.gethostname()
    dead = [lo for lo in leftovers if lo.host == host and not process_alive(lo.pid)]
    if not os.path.lexists(path):
        foreign = [lo for lo in leftovers if lo.host != host and _age_s(lo.path) > FOREIGN_GRACE_S]
        # a complete new version first, else the old one back; the most recent of each
        usable = sorted((lo for lo in dead + foreign if lo.kind in ("new", "old")),
                        key=lambda lo: (lo.kind == "new", _mtime(lo.path)), reverse=True)
        for lo in usable:
            if os.path.lexists(path):
                break  # another process recovered it meanwhile
            try:
                os.replace(lo.path, path)
            except FileNotFoundError:
                continue  # taken by another process recovering it at the same time
            what = "finished replacing it" if lo.kind == "new" else "put the previous version back"
            log.warning("%s: was missing (%s was killed while replacing it); %s from %s",
                        path, lo.owner, what, lo.path.name)
            dead += [other for other in foreign if other.pid == lo.pid and other.host == lo.host]
            break
    for lo in dead:
        if os.path.lexists(lo.path):
            log.info("removing %s, left by %s, which was killed while writing %s", lo.path, lo.owner, path.name)
            _remove(lo.path)


def _leftovers(path: Path) -> list[_Leftover]:
    prefix = f".{path.name}"
    try:
        entries = [e.name for e in os.scandir(path.parent) if e.name.startswith(prefix + ".")]
    except OSError:
        return []
    found = []
    for name in entries:
        rest = name[len(prefix):]
        if m := _OWNED.fullmatch(rest):
            found.append(_Leftover(path.parent / name, int(m["pid"]), m["host"], m["kind"]))
        elif m := _OLD_01.fullmatch(rest):
            found.append(_Leftover(path.parent / name, int(m["pid"]), socket.gethostname(), m["kind"]))
    return found


def _temp_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}@{socket.gethostname()}.{secrets.token_hex(4)}.{kind}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's counts): for leftovers of killed writers."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_ctime
    except FileNotFoundError:
        return 0.0


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; not every filesystem can sync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def _settle_tree(folder: Path) -> None:
    """Give what ``fill`` wrote the modes that the umask gives, and flush it to disk before the rename.

    Some writers create files 0600 whatever the umask (safetensors 0.8 does);
    ``folder`` itself was made by ``mkdir``, so its mode is what the umask
    (or a default ACL) allows.
    """
    allowed = stat.S_IMODE(folder.stat().st_mode)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            want = allowed if stat.S_ISDIR(mode) else (0o666 | (mode & 0o111)) & allowed
            if stat.S_IMODE(mode) != want:
                os.chmod(path, want)
        for name in files:
            if os.path.islink(path := os.path.join(root, name)):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))
