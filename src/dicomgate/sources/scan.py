"""Walk a folder without following anything, and tell DICOM files from others by content.

Symbolic links, FIFOs, sockets and devices are reported, never opened or followed; files are
opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked again after opening, so a file swapped for
a link or a FIFO between the walk and the read is refused too.
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEAD = 132
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
# First tag of a dataset written without preamble: group 0002 or 0008, little or big endian.
_BARE_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x08")

NOT_DICOM = "not DICOM: no DICM prefix and no DICOM dataset at the start of the file"


class FileKind(enum.StrEnum):
    """What a walk found at a path."""

    DICOM = "dicom"
    OTHER = "other"
    SPECIAL = "special"


@dataclass(frozen=True, slots=True)
class Found:
    """One thing found under a scanned folder.

    Parameters
    ----------
    key
        Its path relative to the scanned folder, with ``/`` separators.
    path
        Its path.
    kind
        DICOM by content, another regular file, or something never opened (link, FIFO...).
    reason
        Why it is not imported (empty for DICOM files).
    """

    key: str
    path: Path
    kind: FileKind
    reason: str = ""


def looks_like_dicom(head: bytes) -> bool:
    """Return True when the first bytes of a file look like DICOM (Part 10 or a bare dataset)."""
    if len(head) >= _HEAD and head[128:132] == b"DICM":
        return True
    return head[:4] == b"DICM" or (len(head) >= 8 and head[:2] in _BARE_STARTS)


def special_reason(mode: int) -> str:
    """Return why a file of this ``st_mode`` is never opened, or ``""`` for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISLNK(mode):
        return "symbolic link (not followed)"
    if stat.S_ISFIFO(mode):
        return "FIFO (not opened)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device (not opened)"
    if stat.S_ISSOCK(mode):
        return "socket (not opened)"
    return "not a regular file"


def read_regular(path: Path, limit: int = -1) -> bytes:
    """Read a regular file (up to ``limit`` bytes) without following a link or opening a FIFO.

    Raises
    ------
    OSError
        When the path is a link (``ELOOP``), is not a regular file, or cannot be read.
    """
    with _opened_regular(path) as (fh, _info):
        return fh.read(limit) if limit >= 0 else fh.read()


def read_regular_file(path: Path) -> tuple[bytes, os.stat_result | None]:
    """Read a whole regular file as ``read_regular``; also return its ``fstat``.

    The ``fstat`` is None when the file changed while it was read (its size or modification
    time moved): the bytes may then be a mix, and must not stand for the file.
    """
    with _opened_regular(path) as (fh, info):
        data = fh.read()
        return data, unchanged_since(fh.fileno(), info)


@contextlib.contextmanager
def _opened_regular(path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """Open ``path`` without following a link or blocking on a FIFO; refuse all but files."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{special_reason(info.st_mode)}: {path.name}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            yield fh, info
    finally:
        os.close(fd)


def unchanged_since(fd: int, before: os.stat_result) -> os.stat_result | None:
    """Return ``fstat`` of ``fd`` when its size and modification time are still ``before``'s."""
    after = os.fstat(fd)
    same = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    return after if same else None


def classify(path: Path, key: str) -> Found:
    """Classify one path by its type and, for a regular file, by its first bytes."""
    try:
        mode = path.lstat().st_mode
        reason = special_reason(mode)
        if reason:
            return Found(key, path, FileKind.SPECIAL, reason)
        head = read_regular(path, _HEAD)
    except OSError as exc:
        return Found(key, path, FileKind.SPECIAL, f"cannot be read: {exc.strerror or exc}")
    if looks_like_dicom(head):
        return Found(key, path, FileKind.DICOM)
    return Found(key, path, FileKind.OTHER, NOT_DICOM)


def walk(root: Path, skip: frozenset[str] = frozenset()) -> list[Found]:
    """Return everything under ``root`` (sorted by key), never following a link.

    Parameters
    ----------
    root
        The folder to walk.
    skip
        Keys (relative paths) of files or folders to leave out, with everything below them.
    """
    found: list[Found] = []
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            found.append(Found(prefix or ".", folder, FileKind.SPECIAL, f"cannot list: {exc}"))
            continue
        for entry in entries:
            key = f"{prefix}{entry.name}"
            if key in skip:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), f"{key}/"))
            else:
                found.append(classify(Path(entry.path), key))
    return sorted(found, key=lambda f: f.key)


def holds_at_least(paths: Sequence[Path], count: int) -> bool:
    """Return True when ``paths`` hold ``count`` files or more, never following a link.

    Folders are walked until ``count`` entries that are not folders were seen, so a large
    import is recognised after listing that many names, before it is walked whole.
    """
    seen = 0
    stack = list(paths)
    while stack and seen < count:
        path = stack.pop()
        try:
            is_folder = stat.S_ISDIR(os.lstat(path).st_mode)
            entries = list(os.scandir(path)) if is_folder else []
        except OSError:
            continue  # missing or unreadable: the import reports it
        if not is_folder:
            seen += 1
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            else:
                seen += 1
    return seen >= count
