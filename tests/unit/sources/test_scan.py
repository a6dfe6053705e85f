"""Folder walks: DICOM by content, nothing followed or opened that is not a regular file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.conftest import PYDICOM_FILES

from dicomgate.sources.scan import FileKind, classify, read_regular, walk


def test_walk_finds_dicom_by_content_at_any_depth(tmp_path: Path) -> None:
    deep = tmp_path / "s1" / "scan1" / "deeper"
    deep.mkdir(parents=True)
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", deep / "IMG0001")  # no extension
    shutil.copy(PYDICOM_FILES / "ExplVR_LitEndNoMeta.dcm", tmp_path / "bare.bin")  # no preamble
    (tmp_path / "s1" / "report.pdf").write_bytes(b"%PDF-1.4 not dicom at all, long enough" * 9)
    (tmp_path / "empty").write_bytes(b"")
    found = {f.key: f.kind for f in walk(tmp_path)}
    assert found == {
        "bare.bin": FileKind.DICOM,
        "empty": FileKind.OTHER,
        "s1/report.pdf": FileKind.OTHER,
        "s1/scan1/deeper/IMG0001": FileKind.DICOM,
    }


def test_links_fifos_are_reported_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", outside / "secret.dcm")
    root = tmp_path / "root"
    root.mkdir()
    (root / "to_dir").symlink_to(outside)
    (root / "to_file.dcm").symlink_to(outside / "secret.dcm")
    os.mkfifo(root / "pipe")
    found = {f.key: f for f in walk(root)}
    assert set(found) == {"to_dir", "to_file.dcm", "pipe"}
    assert all(f.kind is FileKind.SPECIAL for f in found.values())
    assert "symbolic link" in found["to_dir"].reason
    assert "FIFO" in found["pipe"].reason


def test_read_regular_refuses_a_link_or_fifo_swapped_in(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(PYDICOM_FILES / "CT_small.dcm")
    with pytest.raises(OSError):
        read_regular(tmp_path / "link")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="FIFO"):
        read_regular(tmp_path / "pipe")  # returns at once: opened non-blocking, then refused
    assert classify(tmp_path / "gone", "gone").kind is FileKind.SPECIAL


def test_walk_skips_named_subtrees(tmp_path: Path) -> None:
    for name in ("done/a", "rejected/b", "in/c"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    keys = [f.key for f in walk(tmp_path, frozenset({"done", "rejected"}))]
    assert keys == ["in/c"]


def test_holds_at_least_counts_files_at_any_depth_without_following_links(
    tmp_path: Path,
) -> None:
    from dicomgate.sources.scan import holds_at_least

    for n in range(3):
        (tmp_path / "a" / "b").mkdir(parents=True, exist_ok=True)
        (tmp_path / "a" / "b" / f"f{n}").write_bytes(b"x")
    (tmp_path / "loose").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for n in range(10):
        (elsewhere / f"g{n}").write_bytes(b"x")
    (tmp_path / "a" / "link").symlink_to(elsewhere, target_is_directory=True)
    # 3 files + the link itself (counted as an entry, never walked) + the loose file.
    assert holds_at_least([tmp_path / "a", tmp_path / "loose"], 5)
    assert not holds_at_least([tmp_path / "a", tmp_path / "loose"], 6)
    assert not holds_at_least([tmp_path / "missing"], 1)
    assert holds_at_least([], 0) and not holds_at_least([], 1)
