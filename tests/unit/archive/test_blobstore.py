import contextlib
import ctypes
import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from dicomgate.archive import blobstore
from dicomgate.archive.blobstore import FilesystemBlobStore, KeyMaker
from dicomgate.errors import NotFoundError, StorageError, StorageFullError


@pytest.fixture()
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


def test_create_read_range_exists_remove(store: FilesystemBlobStore) -> None:
    key = store.create(b"0123456789")
    assert store.exists(key)
    assert store.read(key) == b"0123456789"
    assert store.read_range(key, 3, 4) == b"3456"
    store.remove(key)
    assert not store.exists(key)
    store.remove(key)  # removing twice is harmless


def test_keys_are_generated_and_fanned_out(store: FilesystemBlobStore) -> None:
    key = store.create(b"x")
    assert len(key) == 32
    assert store.path(key).relative_to(store.root).parts == (key[:2], key[2:4], key)
    assert store.temp_files() == []
    assert list(store.iter_keys()) == [key]


def test_a_blob_written_in_short_writes_is_whole(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:1000]))
    data = os.urandom(10_500)
    assert store.read(store.create(data)) == data


@pytest.mark.parametrize(
    ("call", "code", "raised", "message"),
    [
        ("fsync", errno.EIO, StorageError, "Input/output error"),  # may not be on disk
        ("write", errno.ENOSPC, StorageFullError, "no space left"),
    ],
)
def test_a_blob_that_could_not_be_stored_is_not_kept(
    store: FilesystemBlobStore,
    monkeypatch: pytest.MonkeyPatch,
    call: str,
    code: int,
    raised: type[StorageError],
    message: str,
) -> None:
    def fail(*_args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, call, fail)
    with pytest.raises(raised, match=message):
        store.create(b"not stored")
    monkeypatch.undo()
    assert list(store.iter_keys()) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "1.2.840.10008", "A" * 32, ""])
def test_keys_from_outside_are_refused(store: FilesystemBlobStore, bad: str) -> None:
    with pytest.raises(NotFoundError):
        store.path(bad)


def test_missing_blob_is_not_found(store: FilesystemBlobStore) -> None:
    with pytest.raises(NotFoundError):
        store.read("0" * 32)


def test_create_many_stores_every_blob_with_its_own_key(store: FilesystemBlobStore) -> None:
    blobs = [bytes([n]) * (n + 1) for n in range(40)]
    keys = store.create_many(blobs)
    assert len(set(keys)) == 40
    assert [store.read(key) for key in keys] == blobs
    assert store.temp_files() == []
    assert sorted(store.iter_keys()) == sorted(keys)


def test_create_many_keeps_nothing_when_a_write_fails(store: FilesystemBlobStore) -> None:
    for n in range(256):  # a file where each fan-out folder would go: every blob fails
        (store.root / f"{n:02x}").write_bytes(b"")
    with pytest.raises(StorageError):
        store.create_many([b"a", b"b", b"c"])
    assert list(store.iter_keys()) == [] and store.temp_files() == []


def test_leftovers_of_a_batch_are_temporary_files_not_keys(store: FilesystemBlobStore) -> None:
    [key] = store.create_many([b"kept"])
    leftover = store.path(key).with_name(f"{'0' * 32}.tmp")  # a crash mid-batch leaves this
    leftover.write_bytes(b"half")
    assert list(store.iter_keys()) == [key] and store.temp_files() == [leftover]


def test_create_many_of_nothing_is_nothing(store: FilesystemBlobStore) -> None:
    assert store.create_many([]) == []


def test_consecutive_keys_share_a_folder_until_it_has_had_its_share() -> None:
    make = KeyMaker(uses=3)
    keys = [make() for _ in range(7)]
    assert len(set(keys)) == 7 and all(len(k) == 32 and int(k, 16) >= 0 for k in keys)
    folders = [k[:4] for k in keys]
    assert folders[0] == folders[1] == folders[2] and folders[3] == folders[4] == folders[5]
    assert len({k[4:] for k in keys}) == 7  # the rest of each key is drawn afresh


def test_a_batch_lands_in_one_folder(store: FilesystemBlobStore) -> None:
    keys = store.create_many([b"a", b"b", b"c", b"d"])
    assert len({store.path(key).parent for key in keys}) == 1


def test_create_many_without_syncfs_fsyncs_each_blob(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobstore, "_SYNCFS", None)  # not Linux, or a kernel before 5.8
    blobs = [bytes([n]) * (n + 1) for n in range(20)]
    keys = store.create_many(blobs)
    assert [store.read(key) for key in keys] == blobs
    assert store.temp_files() == [] and sorted(store.iter_keys()) == sorted(keys)


def test_create_many_syncs_each_file_system_once_after_writing_the_final_names(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def syncfs(fd: int) -> int:
        seen.append(sorted(p.name for p in store.root.rglob("*") if p.is_file()))
        return 0

    monkeypatch.setattr(blobstore, "_SYNCFS", syncfs)
    keys = store.create_many([b"a", b"b", b"c"])
    assert seen == [sorted(keys)]  # every blob written whole before the one sync
    assert [store.read(key) for key in keys] == [b"a", b"b", b"c"]


def test_a_failed_sync_keeps_nothing(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def syncfs(fd: int) -> int:
        ctypes.set_errno(errno.EIO)  # write-back failed: the bytes may not be on disk
        return -1

    monkeypatch.setattr(blobstore, "_SYNCFS", syncfs)
    with pytest.raises(StorageError, match="Input/output error"):
        store.create_many([b"a", b"b"])
    assert list(store.iter_keys()) == [] and store.temp_files() == []


@pytest.mark.parametrize(("platform", "release"), [("linux", "5.4.0-150"), ("darwin", "23.1.0")])
def test_syncfs_is_used_only_where_it_reports_errors(
    monkeypatch: pytest.MonkeyPatch, platform: str, release: str
) -> None:
    monkeypatch.setattr(blobstore.sys, "platform", platform)
    uname = os.uname()
    fake = os.uname_result((*uname[:2], release, *uname[3:]))
    monkeypatch.setattr(blobstore.os, "uname", lambda: fake)
    assert blobstore._find_syncfs() is None


def test_the_sync_descriptor_is_opened_before_any_blob_is_written(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # syncfs reports only the write-back errors seen since its descriptor was opened.
    opened_with: list[list[Path]] = []
    real = blobstore._file_systems

    @contextlib.contextmanager
    def spy(folders: Iterable[Path]) -> Iterator[list[int]]:
        opened_with.append([p for p in store.root.rglob("*") if p.is_file()])
        with real(folders) as fds:
            yield fds

    monkeypatch.setattr(blobstore, "_file_systems", spy)
    monkeypatch.setattr(blobstore, "_SYNCFS", lambda fd: 0)
    keys = store.create_many([b"a", b"b"])
    assert opened_with == [[]] and [store.read(key) for key in keys] == [b"a", b"b"]
