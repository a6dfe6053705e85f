"""``create_many`` taking files its source gives up: linked when safe, copied otherwise."""

import ctypes
import errno
import os
from pathlib import Path

import pytest

from dicomgate.archive import blobstore
from dicomgate.archive.blobstore import FilesystemBlobStore, TakenFile
from dicomgate.errors import StorageError

pytestmark = pytest.mark.skipif(blobstore._SYNCFS is None, reason="files are taken with syncfs")


@pytest.fixture()
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


def _dropped(folder: Path, name: str, data: bytes, mode: int = 0o666) -> tuple[Path, TakenFile]:
    """Write a dropped file; return it and what reading it recorded."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    path.chmod(mode)
    return path, TakenFile.of(str(path), os.stat(path))


def test_a_taken_file_becomes_the_blob_without_a_copy(
    store: FilesystemBlobStore, tmp_path: Path
) -> None:
    path, taken = _dropped(tmp_path / "drop", "a.dcm", b"instance a", mode=0o666)
    keys = store.create_many([b"instance a", b"instance b"], [taken])
    assert os.stat(store.path(keys[0])).st_ino == taken.inode  # linked, not written
    assert os.stat(store.path(keys[0])).st_mode & 0o7777 == blobstore._BLOB_MODE
    path.unlink()  # what the import does once the blob is indexed
    assert [store.read(key) for key in keys] == [b"instance a", b"instance b"]
    assert os.stat(store.path(keys[0])).st_nlink == 1


def test_a_file_changed_since_it_was_read_is_copied_from_what_was_read(
    store: FilesystemBlobStore, tmp_path: Path
) -> None:
    path, taken = _dropped(tmp_path / "drop", "a.dcm", b"as read")
    path.write_bytes(b"rewritten after the read")
    os.utime(path, ns=(taken.mtime_ns + 10**9, taken.mtime_ns + 10**9))
    (key,) = store.create_many([b"as read"], [taken])
    assert os.stat(store.path(key)).st_ino != taken.inode
    assert store.read(key) == b"as read"


def test_a_file_replaced_by_another_is_copied(store: FilesystemBlobStore, tmp_path: Path) -> None:
    path, taken = _dropped(tmp_path / "drop", "a.dcm", b"as read")
    other = tmp_path / "other.dcm"
    other.write_bytes(b"as read")
    os.replace(other, path)  # same bytes, another file
    (key,) = store.create_many([b"as read"], [taken])
    assert os.stat(store.path(key)).st_ino not in (taken.inode, os.stat(path).st_ino)
    assert store.read(key) == b"as read"


def test_a_file_with_another_name_is_copied(store: FilesystemBlobStore, tmp_path: Path) -> None:
    path, taken = _dropped(tmp_path / "drop", "a.dcm", b"shared")
    os.link(path, tmp_path / "second-name.dcm")  # whoever holds it could change the blob
    (key,) = store.create_many([b"shared"], [taken])
    assert os.stat(store.path(key)).st_ino != taken.inode
    assert os.stat(path).st_nlink == 2


def test_a_file_gone_since_it_was_read_is_stored_from_what_was_read(
    store: FilesystemBlobStore, tmp_path: Path
) -> None:
    path, taken = _dropped(tmp_path / "drop", "a.dcm", b"read, then deleted")
    path.unlink()
    (key,) = store.create_many([b"read, then deleted"], [taken])
    assert store.read(key) == b"read, then deleted"


def test_a_symbolic_link_is_never_taken(store: FilesystemBlobStore, tmp_path: Path) -> None:
    target, _ = _dropped(tmp_path / "elsewhere", "t.dcm", b"target")
    link = tmp_path / "drop" / "a.dcm"
    link.parent.mkdir()
    link.symlink_to(target)
    taken = TakenFile.of(str(link), os.stat(target))  # as if the file was swapped for a link
    (key,) = store.create_many([b"target"], [taken])
    assert not store.path(key).is_symlink()
    assert os.stat(store.path(key)).st_ino != taken.inode


def test_a_file_on_another_file_system_is_copied(store: FilesystemBlobStore) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(store.root).st_dev:
        pytest.skip("needs a second file system")
    path, taken = _dropped(shm / f"dicomgate-taken-{os.getpid()}", "a.dcm", b"far away")
    try:
        (key,) = store.create_many([b"far away"], [taken])
        assert store.read(key) == b"far away"
        assert os.stat(path).st_nlink == 1
    finally:
        path.unlink()
        path.parent.rmdir()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_root_makes_a_taken_file_its_own(store: FilesystemBlobStore, tmp_path: Path) -> None:
    path, _ = _dropped(tmp_path / "drop", "a.dcm", b"from a share user", mode=0o666)
    os.chown(path, 12345, 12345)
    taken = TakenFile.of(str(path), os.stat(path))
    (key,) = store.create_many([b"from a share user"], [taken])
    info = os.stat(store.path(key))
    assert info.st_ino == taken.inode
    assert (info.st_uid, info.st_mode & 0o7777) == (0, blobstore._BLOB_MODE)


def test_a_failed_sync_leaves_the_taken_file_where_it_was(
    store: FilesystemBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def syncfs(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(blobstore, "_SYNCFS", syncfs)
    path, taken = _dropped(tmp_path / "drop", "a.dcm", b"keep me")
    with pytest.raises(StorageError):
        store.create_many([b"keep me"], [taken])
    assert path.read_bytes() == b"keep me" and os.stat(path).st_nlink == 1
    assert list(store.iter_keys()) == []


def test_the_creation_mode_follows_the_umask(monkeypatch: pytest.MonkeyPatch) -> None:
    old = os.umask(0o027)
    try:
        assert blobstore._creation_mode() == 0o640
    finally:
        os.umask(old)
