"""Blob storage: five methods keyed by generated ids, never by UIDs a peer sent.

The filesystem store writes to a temporary name, renames it into a two-level fan-out directory,
then fsyncs the file and the directory at once, so a key that ``create`` returned survives a
crash. The fsyncs run concurrently (the file system shares one journal commit between them
instead of one commit each); ``create_many`` does the same for several blobs in one directory.
Nothing refers to a key before it is returned, so a crash before the fsyncs returned leaves at
most an unindexed file, which start-up reconciliation sets aside.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from dicomgate.errors import NotFoundError, StorageError, StorageFullError

TEMP_DIR = ".tmp"
_SYNC_THREADS = 8
_HEX = frozenset("0123456789abcdef")


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
        self._syncer: ThreadPoolExecutor | None = None

    def path(self, key: str) -> Path:
        """Return the file path of ``key`` (the key is validated, never a peer's string)."""
        if len(key) != 32 or not _HEX.issuperset(key):
            raise NotFoundError(f"invalid blob key {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def create(self, data: bytes) -> str:
        """Store ``data`` durably and return its new key."""
        return self._create([new_key()], [data])[0]

    def create_many(self, datas: Sequence[bytes]) -> list[str]:
        """Store several blobs durably with one sync pass; return their keys in order.

        The keys share their first four digits, so the blobs share one directory (one
        directory fsync) and their file fsyncs overlap. On failure none of them is stored.
        """
        if not datas:
            return []
        prefix = new_key()[:4]
        return self._create([prefix + new_key()[4:] for _ in datas], datas)

    def _create(self, keys: list[str], datas: Sequence[bytes]) -> list[str]:
        parent = self.path(keys[0]).parent
        fds: list[int] = []
        placed: list[Path] = []
        try:
            directories = self._ensure_dir(parent)
            for key, data in zip(keys, datas, strict=True):
                tmp = self.temp / key
                fds.append(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                _write_all(fds[-1], data)
                os.rename(tmp, parent / key)
                placed.append(parent / key)
            self._sync(fds, directories)
            self._known_dirs.add(parent)
        except OSError as exc:
            for path in [*placed, *(self.temp / key for key in keys)]:
                path.unlink(missing_ok=True)
            raise _storage_error(exc, "store a blob") from exc
        finally:
            for fd in fds:
                os.close(fd)
        return keys

    def _sync(self, fds: list[int], directories: list[Path]) -> None:
        """Fsync the files and directories concurrently; raise the first failure."""
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="blob-fsync")
        futures = [self._syncer.submit(os.fsync, fd) for fd in fds]
        futures += [self._syncer.submit(_fsync_dir, d) for d in directories[1:]]
        try:
            _fsync_dir(directories[0])
        finally:
            errors = [f.exception() for f in futures]  # waits: the fds stay open until then
        for error in errors:
            if error is not None:
                raise error

    def adopt(self, tmp: Path) -> str:
        """Move a file already written and fsynced under ``temp`` into the store."""
        key = new_key()
        try:
            self._move_into_place(tmp, key)
        except OSError as exc:
            raise _storage_error(exc, "store a blob") from exc
        return key

    def _ensure_dir(self, parent: Path) -> list[Path]:
        """Create ``parent`` if needed; return the directories whose entries must be synced."""
        if parent in self._known_dirs:
            return [parent]
        # Another thread may have just made it and not yet synced its entry: sync it again.
        parent.mkdir(parents=True, exist_ok=True)
        return [parent, parent.parent, parent.parent.parent]

    def _move_into_place(self, tmp: Path, key: str) -> None:
        final = self.path(key)
        directories = self._ensure_dir(final.parent)
        os.rename(tmp, final)
        for directory in directories:
            _fsync_dir(directory)
        self._known_dirs.add(final.parent)

    def read(self, key: str) -> bytes:
        """Return the whole blob."""
        try:
            with open(self.path(key), "rb", buffering=0) as fh:
                return fh.read()
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
