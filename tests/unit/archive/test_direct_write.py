"""Large blobs written past the page cache (``O_DIRECT``), and the fall-back when refused."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.direct_write import DIRECT_FROM, O_DIRECT, write_direct
from dicomgate.errors import StorageError

pytestmark = pytest.mark.skipif(not O_DIRECT, reason="the platform has no O_DIRECT")


@pytest.fixture()
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


@pytest.fixture()
def direct_store(store: FilesystemBlobStore) -> FilesystemBlobStore:
    """The store, where its file system takes O_DIRECT (the fall-back is tested by patching)."""
    try:
        os.close(os.open(store.root / "probe", os.O_WRONLY | os.O_CREAT | O_DIRECT, 0o644))
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        pytest.skip("this file system refuses O_DIRECT")
    os.unlink(store.root / "probe")
    return store


def _opened_with(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    flags: list[int] = []
    real_open = os.open

    def recording(path: Any, flag: int, *args: Any) -> int:
        flags.append(flag)
        return real_open(path, flag, *args)

    monkeypatch.setattr(os, "open", recording)
    return flags


@pytest.mark.parametrize(
    "size", [DIRECT_FROM, DIRECT_FROM + 1, 525_000, (1 << 20) - 1, 1 << 20, 3 * (1 << 20) + 7]
)
def test_a_large_blob_is_written_direct_and_read_back_whole(
    direct_store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    flags = _opened_with(monkeypatch)
    data = os.urandom(size)
    key = direct_store.create(data)
    monkeypatch.undo()
    assert flags[0] & O_DIRECT
    assert direct_store.path(key).stat().st_size == size
    assert direct_store.read(key) == data


def test_a_small_blob_goes_through_the_page_cache(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = _opened_with(monkeypatch)
    key = store.create(b"x" * (DIRECT_FROM - 1))
    monkeypatch.undo()
    assert not flags[0] & O_DIRECT
    assert store.read(key) == b"x" * (DIRECT_FROM - 1)


@pytest.mark.parametrize("refused_at", ["open", "write"])
def test_a_file_system_that_refuses_o_direct_gets_cached_writes(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch, refused_at: str
) -> None:
    real_open, real_pwrite = os.open, os.pwrite

    def opening(path: Any, flag: int, *args: Any) -> int:
        if refused_at == "open" and flag & O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flag, *args)

    def writing(*_args: Any) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "pwrite", writing if refused_at == "write" else real_pwrite)
    data = os.urandom(DIRECT_FROM * 2)
    first, second = store.create(data), store.create(data[::-1])
    monkeypatch.undo()
    assert (store.read(first), store.read(second)) == (data, data[::-1])
    assert sorted(store.iter_keys()) == sorted([first, second])  # nothing half-written kept
    assert not store._direct  # not asked again


def test_a_failed_direct_write_keeps_nothing(
    direct_store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError, match="Input/output error"):
        direct_store.create(os.urandom(DIRECT_FROM))
    monkeypatch.undo()
    assert list(direct_store.iter_keys()) == []


def test_write_direct_cuts_the_file_to_its_length(direct_store: FilesystemBlobStore) -> None:
    path = direct_store.root / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | O_DIRECT, 0o644)
    try:
        write_direct(fd, memoryview(b"abc" * 5000))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abc" * 5000


def test_a_batch_writes_its_large_blobs_direct_and_syncs_once(
    direct_store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomgate.archive import blobstore

    if blobstore._SYNCFS is None:
        pytest.skip("no syncfs here: a batch fsyncs each blob")
    syncs: list[int] = []
    real_syncfs = blobstore._SYNCFS
    monkeypatch.setattr(blobstore, "_SYNCFS", lambda fd: syncs.append(fd) or real_syncfs(fd))
    flags = _opened_with(monkeypatch)
    blobs = [os.urandom(DIRECT_FROM + 100), b"small", os.urandom(2 * DIRECT_FROM)]
    keys = direct_store.create_many(blobs)
    monkeypatch.undo()
    direct = [bool(f & O_DIRECT) for f in flags if f & os.O_CREAT]
    assert direct == [True, False, True] and len(syncs) == 1
    assert [direct_store.read(key) for key in keys] == blobs


def test_a_batch_on_a_file_system_refusing_o_direct_is_written_whole(
    store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def opening(path: Any, flag: int, *args: Any) -> int:
        if flag & O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flag, *args)

    monkeypatch.setattr(os, "open", opening)
    blobs = [os.urandom(DIRECT_FROM), os.urandom(DIRECT_FROM + 1)]
    keys = store.create_many(blobs)
    monkeypatch.undo()
    assert [store.read(key) for key in keys] == blobs and not store._direct
