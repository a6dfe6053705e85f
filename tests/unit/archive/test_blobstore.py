from pathlib import Path

import pytest

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.errors import NotFoundError, StorageError


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


@pytest.mark.parametrize("bad", ["../../etc/passwd", "1.2.840.10008", "A" * 32, ""])
def test_keys_from_outside_are_refused(store: FilesystemBlobStore, bad: str) -> None:
    with pytest.raises(NotFoundError):
        store.path(bad)


def test_missing_blob_is_not_found(store: FilesystemBlobStore) -> None:
    with pytest.raises(NotFoundError):
        store.read("0" * 32)


def test_create_many_stores_each_blob_in_one_directory(store: FilesystemBlobStore) -> None:
    datas = [bytes([n]) * (n + 1) for n in range(5)]
    keys = store.create_many(datas)
    assert [store.read(key) for key in keys] == datas
    assert len(set(keys)) == 5
    assert len({store.path(key).parent for key in keys}) == 1
    assert store.temp_files() == []
    assert store.create_many([]) == []


def test_create_many_that_fails_leaves_nothing(store: FilesystemBlobStore) -> None:
    store.temp.rmdir()  # the temporary folder is gone: the first write fails
    with pytest.raises(StorageError):
        store.create_many([b"a", b"b"])
    assert list(store.iter_keys()) == []
