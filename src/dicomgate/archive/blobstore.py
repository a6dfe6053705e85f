"""Blob storage: five methods keyed by generated ids, never by UIDs a peer sent.

Keys are random; consecutive ones share a fan-out folder for a while (``KeyMaker``), so a
batch or a stream of instances does not create a folder per blob. The filesystem store writes
a blob under its final name in a two-level fan-out directory and
fsyncs the file and the directory (unless the file system makes the name durable with the
file: ``archive.file_systems``), so a key that ``create`` returned survives a crash; a file
written and fsynced under ``temp`` first is renamed into place by ``adopt``.
``create_many`` does the same for a batch with one flush: on Linux every blob is written
under its final name and one ``syncfs`` writes them all with their directory entries
(elsewhere each is written to a temporary name, fsynced and renamed on a thread of its own,
then every folder touched is fsynced); no key is returned before all of that is done.
A blob of a batch may also be a file its source gives up (``TakenFile``: a watched folder's
file that is removed once imported): it is linked in instead of copied, when it is still the
file that was read, only the store's, and on the store's file system.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, cast

from dicomgate.archive.direct_write import DIRECT_FROM, O_DIRECT, write_direct
from dicomgate.archive.file_systems import new_names_synced_with_file
from dicomgate.errors import NotFoundError, StorageError, StorageFullError

T = TypeVar("T")
log = logging.getLogger(__name__)
TEMP_DIR = ".tmp"
TEMP_SUFFIX = ".tmp"  # of a blob being written beside its final name (no syncfs)
_FLUSHERS = 16  # fsyncs in flight at once for a batch; they wait on the disk, not the CPU


def _creation_mode() -> int:
    """Return the mode ``open`` gives a new file here (0o666 less the umask), from /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


_BLOB_MODE = _creation_mode()  # a taken file gets the mode of a written blob


@dataclass(frozen=True, slots=True)
class TakenFile:
    """A file whose bytes are exactly one blob, which its source removes once it is indexed.

    ``create_many`` links it into the store instead of copying it (no data written twice);
    the identity is the file as it was read, so a file changed or replaced since is copied
    from the bytes that were read instead.

    Parameters
    ----------
    path
        Where the file is.
    device, inode, size, mtime_ns
        What ``fstat`` said of it when it was read.
    """

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str, info: os.stat_result) -> TakenFile:
        """Return the file at ``path`` as ``info`` (its ``fstat`` when read) describes it."""
        return cls(path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def is_same(self, info: os.stat_result) -> bool:
        """Return True when ``info`` describes this file, unchanged since it was read."""
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) == (
            self.device,
            self.inode,
            self.size,
            self.mtime_ns,
        )


def _link(file: TakenFile, final: Path) -> bool:
    """Link ``file`` in as ``final`` when that is safe; return False to have it copied.

    Safe means: still the file that was read, a regular file with no other name (nobody else
    can reach the blob through a second path once the source name is removed), and owned by
    this process's user (root takes any file and makes it its own). The blob then gets the
    owner and mode of a written one, so whoever could write the dropped file cannot change
    the archive's copy.
    """
    euid = os.geteuid()
    try:
        info = os.lstat(file.path)
        if not (stat.S_ISREG(info.st_mode) and file.is_same(info) and info.st_nlink == 1):
            return False
        if info.st_uid != euid and euid != 0:
            return False
        os.link(file.path, final, follow_symlinks=False)
    except OSError:  # another file system (EXDEV), links refused, the file gone
        return False
    try:
        linked = os.lstat(final)
        if file.is_same(linked) and linked.st_nlink == 2:  # not swapped, not linked elsewhere
            if linked.st_uid != euid:
                os.chown(final, euid, os.getegid())
            os.chmod(final, _BLOB_MODE)
            return True
    except OSError:
        pass
    final.unlink(missing_ok=True)
    return False


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


class KeyMaker:
    """Generates keys whose fan-out folder (the first 4 hex digits) stays the same for a while.

    The key stays random (112 random bits after the folder's 16), but consecutive blobs land in
    the same folder until ``uses`` keys were made, then in a freshly drawn one. A blob in a new
    folder costs one or two ``mkdir`` and a parent folder's fsync; a batch in one folder needs
    one folder fsync for all of its blobs. On a fresh store this made a batch's flush about 3x
    faster for small instances.

    Parameters
    ----------
    uses
        How many keys share a folder before the next one is drawn.
    """

    def __init__(self, uses: int = 4096) -> None:
        self.uses = uses
        self._lock = threading.Lock()
        self._folder = ""
        self._left = 0

    def __call__(self) -> str:
        """Return a fresh key in the current folder."""
        with self._lock:
            if self._left <= 0:
                self._folder, self._left = os.urandom(2).hex(), self.uses
            self._left -= 1
            folder = self._folder
        return folder + os.urandom(14).hex()


def _find_syncfs() -> Callable[[int], int] | None:
    """Return libc's ``syncfs`` where it reports write errors (Linux 5.8 on), else None."""
    if sys.platform != "linux":
        return None
    try:
        release = tuple(int(part) for part in os.uname().release.split(".")[:2])
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (ValueError, OSError, AttributeError):
        return None
    if release < (5, 8):  # before 5.8, syncfs returned 0 even when writing back had failed
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return cast("Callable[[int], int]", syncfs)


_SYNCFS = _find_syncfs()


@contextlib.contextmanager
def _file_systems(folders: Iterable[Path]) -> Iterator[list[int]]:
    """Yield one open descriptor per file system holding ``folders``; close them after.

    ``syncfs`` reports the write-back errors of its file system seen since its descriptor was
    opened: open it before the blobs are written, so a failed background write-back of one of
    them (before the sync) is reported too.
    """
    fds: dict[int, int] = {}
    try:
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            device = os.fstat(fd).st_dev
            if device in fds:
                os.close(fd)
            else:
                fds[device] = fd
        yield list(fds.values())
    finally:
        for fd in fds.values():
            os.close(fd)


def _sync(fds: list[int], syncfs: Callable[[int], int]) -> None:
    """Write everything cached of these file systems to disk; raise OSError when that failed."""
    for fd in fds:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _write_new(path: str, data: bytes, direct: bool, sync: bool = True) -> bool:
    """Create the file ``path`` (never an existing one), write ``data`` and fsync it.

    A large blob is written past the page cache when ``direct`` allows it (``direct_write``).
    Returns False when the file system refused that; the blob was then written through the
    cache, and the caller should not ask again. ``sync=False`` leaves the fsync to the
    caller (a batch's one ``syncfs``).
    """
    if direct and O_DIRECT and len(data) >= DIRECT_FROM:
        if _write_new_direct(path, data, sync):
            return True
        _write_new_cached(path, data, sync)
        return False
    _write_new_cached(path, data, sync)
    return True


def _write_new_cached(path: str, data: bytes, sync: bool) -> None:
    # Plain descriptor calls: a buffered file object's ``fstat``, ``isatty`` and ``seek``
    # and its Python layers cost a quarter of a small blob's CPU.
    fd = os.open(path, _NEW_FILE, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_direct(path: str, data: bytes, sync: bool) -> bool:
    """Write ``path`` with ``O_DIRECT``; False (nothing left) when that is refused."""
    try:
        fd = os.open(path, _NEW_FILE | O_DIRECT, 0o666)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return False
    try:
        write_direct(fd, data)
        if sync:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        if exc.errno != errno.EINVAL:
            raise
        os.unlink(path)
        return False
    os.close(fd)
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_pool_lock = threading.Lock()
_pool: list[ThreadPoolExecutor] = []


def _flush_pool() -> ThreadPoolExecutor:
    with _pool_lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(_FLUSHERS, thread_name_prefix="blob-flush"))
        return _pool[0]


def _all_at_once(work: Callable[[T], None], jobs: Iterable[T]) -> None:
    """Run ``work`` on every job concurrently; raise the first error after all finished."""
    futures = [_flush_pool().submit(work, job) for job in jobs]
    errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
    if errors:
        raise errors[0]


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` (and its parent) when missing; return the folders whose entries changed.

    Plain ``os.mkdir`` calls: this runs once per new fan-out folder, for most blobs of a
    fresh store, where ``Path.mkdir(parents=True)`` costs more in Python than in the kernel.
    """
    try:
        os.mkdir(folder)
    except FileExistsError:
        return []
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        return [folder.parent, folder.parent.parent]
    return [folder.parent]


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
        self._folders: dict[str, Path] = {}
        self._direct = True  # large blobs written past the page cache, until refused
        self._new_key = KeyMaker()
        self._names_synced_with_file = new_names_synced_with_file(root)

    def path(self, key: str) -> Path:
        """Return the file path of ``key`` (the key is validated, never a peer's string)."""
        if len(key) != 32 or not all(c in "0123456789abcdef" for c in key):
            raise NotFoundError(f"invalid blob key {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def create(self, data: bytes) -> str:
        """Store ``data`` durably and return its new key.

        The blob is written under its final name, then the file and its directory are
        fsynced. Where the file's fsync makes its name in an existing folder durable too
        (``archive.file_systems``: ext4, XFS, btrfs), the folder is fsynced only when it was
        just created. A crash before this returned leaves a blob that no index row names,
        which start-up reconciliation sets aside; its key was never returned, so nothing was
        acknowledged.
        """
        key = self._new_key()
        parent = self._folder_of(key)
        try:
            folders = self._make_parent(parent)
            if not _write_new(f"{parent}/{key}", data, self._direct):
                self._refuse_direct()
            if len(folders) == 1 and self._names_synced_with_file:
                folders = []  # the blob's folder existed: the file's fsync wrote its name
            for folder in reversed(folders):  # new folders' entries first, the blob's last
                _fsync_dir(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(f"{parent}/{key}")
            raise _storage_error(exc, "store a blob") from exc
        return key

    def _refuse_direct(self) -> None:
        self._direct = False
        log.info("%s refuses O_DIRECT: blobs are written through the page cache", self.root)

    def _folder_of(self, key: str) -> Path:
        """Return the fan-out folder of a key this store generated (one ``Path`` per folder)."""
        folder = self._folders.get(key[:4])
        if folder is None:
            folder = self._folders[key[:4]] = self.root / key[:2] / key[2:4]
        return folder

    def create_many(
        self, blobs: Sequence[bytes], files: Sequence[TakenFile | None] = ()
    ) -> list[str]:
        """Store every blob durably with one flush for the batch; return their keys in order.

        Nothing is returned before every file and every directory entry is on disk. When any
        blob cannot be stored, none is kept (the caller may store them one by one).

        Parameters
        ----------
        blobs
            The bytes of each blob.
        files
            Per blob (in the same order; may be shorter), a file holding exactly those bytes
            that its source gives up once the blob is indexed, or None. Where ``syncfs`` is
            used (Linux), such a file is linked in rather than copied when ``_link`` finds
            that safe; the sync then makes its data durable with the rest.
        """
        keys = [self._new_key() for _ in blobs]
        try:
            if _SYNCFS is not None and keys:
                taken = list(files) + [None] * (len(blobs) - len(files))
                self._write_synced(keys, blobs, taken, _SYNCFS)
            else:
                self._write_fsynced(keys, blobs)
        except OSError as exc:
            for key in keys:
                final = self.path(key)
                for path in (final, final.with_name(key + TEMP_SUFFIX)):
                    with contextlib.suppress(OSError):  # never written, or not removable
                        path.unlink()
            raise _storage_error(exc, "store a blob") from exc
        return keys

    def _write_fsynced(self, keys: list[str], blobs: Sequence[bytes]) -> None:
        """Write, fsync and rename each blob on its own thread, then fsync every folder."""
        folders: set[Path] = set()
        # The fsyncs, the mkdirs of a fresh store's fan-out folders and the renames overlap.
        jobs = zip(keys, blobs, strict=True)
        _all_at_once(lambda job: folders.update(self._write_one(*job)), jobs)
        _all_at_once(_fsync_dir, folders)

    def _write_synced(
        self,
        keys: list[str],
        blobs: Sequence[bytes],
        files: list[TakenFile | None],
        syncfs: Callable[[int], int],
    ) -> None:
        """Write every blob under its final name, then sync the file systems once.

        Each fsync of a small file cost a journal commit and a disk cache flush, about 0.3 ms
        of CPU per blob even when 16 of them overlapped; one ``syncfs`` writes the whole batch
        and its directory entries with one. Nothing names these keys before it returned, so a
        crash leaves blobs, whole or not, that no index row names (set aside by start-up
        reconciliation), as ``create`` does; writing under temporary names and renaming after
        a first sync cost a second sync per batch and protected nothing more.
        """
        finals = [self.path(key) for key in keys]
        folders: set[Path] = set()
        for final in finals:
            folders.update(self._make_parent(final.parent))
        with _file_systems(folders) as fds:
            for final, data, file in zip(finals, blobs, files, strict=True):
                if file is not None and _link(file, final):
                    continue
                if not _write_new(str(final), data, self._direct, sync=False):
                    self._refuse_direct()
            _sync(fds, syncfs)

    def _write_one(self, key: str, data: bytes) -> list[Path]:
        """Write and fsync one blob, rename it into place; return the folders left to fsync.

        The temporary file is in the blob's own fan-out folder (``<key>.tmp``): concurrent
        writers then create and rename in different folders instead of queueing on ``temp``'s
        lock and on the file system's lock for renames across folders.
        """
        final = self.path(key)
        folders = [final.parent]
        if final.parent not in self._known_dirs:
            folders += _make_dirs(final.parent)
            self._known_dirs.add(final.parent)
        tmp = final.with_name(key + TEMP_SUFFIX)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, final)
        return folders

    def adopt(self, tmp: Path) -> str:
        """Move a file already written and fsynced under ``temp`` into the store."""
        key = self._new_key()
        try:
            self._move_into_place(tmp, key)
        except OSError as exc:
            raise _storage_error(exc, "store a blob") from exc
        return key

    def _move_into_place(self, tmp: Path, key: str) -> None:
        folders = self._rename_into_place(tmp, key)
        for folder in reversed(folders):  # new folders' entries first, the blob's last
            _fsync_dir(folder)

    def _rename_into_place(self, tmp: Path, key: str) -> list[Path]:
        """Rename ``tmp`` to the path of ``key``; return the folders to fsync for it to last.

        That is the blob's folder, and the parents of the fan-out folders created for it.
        """
        final = self.path(key)
        folders = self._make_parent(final.parent)
        os.rename(tmp, final)
        return folders

    def _make_parent(self, parent: Path) -> list[Path]:
        """Create a fan-out folder when missing; return the folders to fsync for a blob in it."""
        folders = [parent]
        if parent not in self._known_dirs:
            folders += _make_dirs(parent)
            self._known_dirs.add(parent)
        return folders

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
                    if not blob.name.endswith(TEMP_SUFFIX):
                        yield blob.name

    def temp_files(self) -> list[Path]:
        """Return the leftover temporary files (a crash happened mid-write)."""
        batch_temps = self.root.glob(f"[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*{TEMP_SUFFIX}")
        return [p for p in [*self.temp.iterdir(), *batch_temps] if p.is_file()]
