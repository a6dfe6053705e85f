import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dicomgate.archive import blobstore
from dicomgate.archive.blobstore import FilesystemBlobStore, KeyMaker
from dicomgate.archive.file_systems import file_system_type, new_names_synced_with_file


def _device(path: Path) -> str:
    device = os.stat(path).st_dev
    return f"{os.major(device)}:{os.minor(device)}"


def _table(tmp_path: Path, *lines: str) -> Path:
    table = tmp_path / "mountinfo"
    table.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return table


def test_the_type_is_read_from_the_mount_of_the_paths_device(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        "22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw",
        f"29 1 {_device(tmp_path)} / / rw,relatime shared:1 master:2 - xfs /dev/vda1 rw",
    )
    assert file_system_type(tmp_path, table) == "xfs"
    assert new_names_synced_with_file(tmp_path, table)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "29 1 {dev} / / rw,relatime shared:1 no-separator-here ext4 /dev/vda1 rw",
        "29 1 {dev} / / rw - ",
        "29 1 {dev} / / rw,relatime - overlay overlay rw,lowerdir=/a",
        "29 1 {dev} / / rw,relatime - ext3 /dev/vda1 rw",  # the ext2 driver may mount it
        "29 1 9999:9999 / / rw,relatime - ext4 /dev/vdz rw",  # another device
    ],
)
def test_anything_else_keeps_the_folders_fsync(tmp_path: Path, line: str) -> None:
    table = _table(tmp_path, line.format(dev=_device(tmp_path)))
    assert not new_names_synced_with_file(tmp_path, table)


def test_an_unreadable_table_or_path_is_no_promise(tmp_path: Path) -> None:
    assert file_system_type(tmp_path, tmp_path / "no-such-table") is None
    assert file_system_type(tmp_path / "no-such-folder") is None


@pytest.mark.skipif(shutil.which("findmnt") is None, reason="util-linux findmnt not installed")
def test_the_type_agrees_with_findmnt(tmp_path: Path) -> None:
    found = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "--target", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert file_system_type(tmp_path) == found.stdout.strip()


def _count_folder_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    synced: list[Path] = []
    real = blobstore._fsync_dir

    def spy(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(blobstore, "_fsync_dir", spy)
    return synced


@pytest.mark.parametrize("promised", [True, False])
def test_a_blob_in_an_existing_folder_fsyncs_it_unless_the_file_system_promises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, promised: bool
) -> None:
    monkeypatch.setattr(blobstore, "new_names_synced_with_file", lambda _root: promised)
    store = FilesystemBlobStore(tmp_path / "blobs")
    store._new_key = KeyMaker(uses=2)
    synced = _count_folder_fsyncs(monkeypatch)
    first = store.create(b"first")  # creates its fan-out folders: always fsynced
    assert synced == [store.path(first).parent.parent.parent, store.path(first).parent.parent,
                      store.path(first).parent]  # fmt: skip
    synced.clear()
    second = store.create(b"second")  # same folder, which exists now
    assert store.path(second).parent == store.path(first).parent
    assert synced == ([] if promised else [store.path(second).parent])
    assert store.read(second) == b"second"
