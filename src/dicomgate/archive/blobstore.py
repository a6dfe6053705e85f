"""Blob storage: five methods keyed by generated ids, never by UIDs a peer sent.

The filesystem store writes a blob under its final name in a two-level fan-out directory and
fsyncs the file and the directory, so a key that ``create`` returned survives a crash; a file
written and fsynced under ``temp`` first is renamed into place by ``adopt``.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from dicomgate.errors import NotFoundError, StorageError, StorageFullError

TEMP_DIR = ".tmp"


class BlobStore(Protocol):
    """What the archive needs from blob storage."""

    def create(self, data: bytes) -> str:
        """Store ``data`` durably and return its new key."""
        ...

    def read(self, key: str) -> bytes:
        """Return the whole blob."""
        ...

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start`` (fewer at the end of the blob)."""
        ...

    def exists(self, key: str) -> bool:
        """Return True when the blob is present."""
        ...

    def remove(self, key: str) -> None:
        """Delete the blob; a missing blob is not an error."""
        ...


def new_key() -> str:
    """Return a fresh random key (32 hex digits)."""
    return uuid.uuid4().hex


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"no space left to {what}")
    return StorageError(f"cannot {what}: {exc.strerror}")


class FilesystemBlobStore:
    """Blobs as files under ``root/ab/cd/abcd...``.

    Parameters
    ----------
    root
        The folder that holds the blobs; created when missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp = root / TEMP_DIR
        self.temp.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()

    def path(self, key: str) -> Path:
        """Return the file path of ``key`` (the key is validated, never a peer's string)."""
        if len(key) != 32 or not all(c in "0123456789abcdef" for c in key):
            raise NotFoundError(f"invalid blob key {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def create(self, data: bytes) -> str:
        """Store ``data`` durably and return its new key.

        The blob is written under its final name, then the file and its directory are
        fsynced. On ext4 and XFS the file's fsync commits its new directory entry with it and
        leaves the directory's fsync little to do, where a rename after that fsync needed a
        second journal commit. A crash before both returned leaves a blob that no index row
        names, which start-up reconciliation sets aside; its key was never returned, so
        nothing was acknowledged.
        """
        key = new_key()
        final = self.path(key)
        try:
            self._make_parent(final.parent)
            with open(final, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(final.parent)
        except OSError as exc:
            final.unlink(missing_ok=True)
            raise _storage_error(exc, "store a blob") from exc
        return key

    def adopt(self, tmp: Path) -> str:
        """Move a file already written and fsynced under ``temp`` into the store."""
        key = new_key()
        try:
            self._move_into_place(tmp, key)
        except OSError as exc:
            raise _storage_error(exc, "store a blob") from exc
        return key

    def _move_into_place(self, tmp: Path, key: str) -> None:
        final = self.path(key)
        self._make_parent(final.parent)
        os.rename(tmp, final)
        _fsync_dir(final.parent)

    def _make_parent(self, parent: Path) -> None:
        """Create a fan-out directory durably (checked once per process and directory)."""
        if parent not in self._known_dirs:
            created = not parent.exists()
            parent.mkdir(parents=True, exist_ok=True)
            if created:
                _fsync_dir(parent.parent)
                _fsync_dir(parent.parent.parent)
            self._known_dirs.add(parent)

    def read(self, key: str) -> bytes:
        """Return the whole blob."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {key} is missing") from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start``."""
        try:
            with open(self.path(key), "rb") as fh:
                fh.seek(start)
                return fh.read(length)
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {key} is missing") from exc

    def exists(self, key: str) -> bool:
        """Return True when the blob is present."""
        return self.path(key).is_file()

    def remove(self, key: str) -> None:
        """Delete the blob; a missing blob is not an error."""
        self.path(key).unlink(missing_ok=True)

    def iter_keys(self) -> Iterator[str]:
        """Yield every stored key (for the reconciler)."""
        for first in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for second in sorted(first.glob("[0-9a-f][0-9a-f]")):
                for blob in second.iterdir():
                    yield blob.name

    def temp_files(self) -> list[Path]:
        """Return the leftover temporary files (a crash happened mid-write)."""
        return [p for p in self.temp.iterdir() if p.is_file()]
