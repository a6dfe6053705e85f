"""The archive reader: entries one by one, unsafe entries refused, caps enforced."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import PYDICOM_FILES

from dicomgate.sources.archives import (
    ArchiveError,
    ArchiveLimitError,
    ArchiveLimits,
    name_problem,
    open_archive,
    sniff,
)

CT = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
SMALL = ArchiveLimits(max_entries=50, max_entry_bytes=1 << 20, max_total_bytes=4 << 20)


def _zip(path: Path, members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16) & 0xFFFF0000
            zf.writestr(info, "/etc/passwd")
    return path


def _tar_member(tf: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = b"0") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    tf.addfile(info, io.BytesIO(data) if data else None)


def test_zip_entries_are_read_one_by_one(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.zip", {"s1/ct.dcm": CT, "s1/again/ct.dcm": CT, "notes.txt": b"x"})
    reader = open_archive(path, SMALL)
    keys = [e.key for e in reader.entries()]
    assert keys == ["s1/ct.dcm", "s1/again/ct.dcm", "notes.txt"]
    got = dict((e.key, data) for e, data in reader.read({"s1/ct.dcm", "notes.txt"}))
    assert got == {"s1/ct.dcm": CT, "notes.txt": b"x"}


def test_zip_refuses_traversal_absolute_and_link_entries(tmp_path: Path) -> None:
    members = {"../evil.dcm": CT, "/etc/cron.d/x": b"x", "a/../../b": b"x", "C:\\win.ini": b"x"}
    path = _zip(tmp_path / "bad.zip", {**members, "ok.dcm": CT}, symlinks=("link.dcm",))
    reader = open_archive(path, SMALL)
    problems = {e.name: e.problem for e in reader.entries()}
    assert "climbs out" in problems["../evil.dcm"]
    assert "climbs out" in problems["a/../../b"]
    assert "absolute" in problems["/etc/cron.d/x"]
    assert "absolute" in problems["C:\\win.ini"]
    assert "symbolic link" in problems["link.dcm"]
    assert problems["ok.dcm"] == ""
    everything = {e.key for e in reader.entries()}
    assert [e.key for e, _ in reader.read(everything)] == ["ok.dcm"]
    assert not (tmp_path / "evil.dcm").exists()


def test_zip_bomb_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.zip", {"ok.dcm": CT, "zeros.dcm": bytes(8 << 20)})
    assert path.stat().st_size < 100_000
    reader = open_archive(path, SMALL)
    with pytest.raises(ArchiveLimitError, match="per-entry limit"):
        reader.entries()
    with pytest.raises(ArchiveLimitError, match="zip bomb"):
        next(iter(reader.read({"ok.dcm"})))


def test_zip_total_and_count_caps(tmp_path: Path) -> None:
    many = _zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(51)})
    with pytest.raises(ArchiveLimitError, match="more than 50 entries"):
        open_archive(many, SMALL).entries()
    big = _zip(tmp_path / "big.zip", {f"f{i}": bytes(900_000) for i in range(5)})
    with pytest.raises(ArchiveLimitError, match="total limit"):
        open_archive(big, SMALL).entries()


def test_zip_entry_lying_about_its_size_is_cut_at_the_declared_size(tmp_path: Path) -> None:
    path = _zip(tmp_path / "liar.zip", {"zeros": bytes(3 << 20)})
    raw = bytearray(path.read_bytes())
    declared = (3 << 20).to_bytes(4, "little")
    raw = bytearray(bytes(raw).replace(declared, (1000).to_bytes(4, "little")))
    path.write_bytes(raw)
    reader = open_archive(path, SMALL)
    [(entry, data)] = list(reader.read({"zeros"}))
    assert data == b"" and "corrupt" in entry.problem


def test_tar_and_tar_gz_entries_and_refusals(tmp_path: Path) -> None:
    for mode, suffix in (
        ("w", "tar"),
        ("w:gz", "tar.gz"),
        ("w:bz2", "tar.bz2"),
        ("w:xz", "tar.xz"),
    ):
        path = tmp_path / f"a.{suffix}"
        with tarfile.open(path, mode) as tf:
            _tar_member(tf, "study/ct.dcm", CT)
            _tar_member(tf, "study", kind=tarfile.DIRTYPE)
            _tar_member(tf, "../up.dcm", CT)
            _tar_member(tf, "/abs.dcm", CT)
            _tar_member(tf, "sym", kind=tarfile.SYMTYPE)
            _tar_member(tf, "hard", kind=tarfile.LNKTYPE)
            _tar_member(tf, "dev", kind=tarfile.CHRTYPE)
            _tar_member(tf, "fifo", kind=tarfile.FIFOTYPE)
        assert sniff(path) == suffix
        reader = open_archive(path, SMALL)
        problems = {e.name: e.problem for e in reader.entries()}
        assert problems["study/ct.dcm"] == ""
        assert "climbs out" in problems["../up.dcm"] and "absolute" in problems["/abs.dcm"]
        assert "symbolic link" in problems["sym"] and "hard link" in problems["hard"]
        assert "device" in problems["dev"] and "FIFO" in problems["fifo"]
        got = list(reader.read(set(problems)))
        assert [(e.key, d) for e, d in got] == [("study/ct.dcm", CT)]


def test_tar_gz_bomb_ends_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        _tar_member(tf, "ok.dcm", CT)
        _tar_member(tf, "zeros", bytes(8 << 20))
    reader = open_archive(path, SMALL)
    with pytest.raises(ArchiveLimitError, match="per-entry limit"):
        reader.entries()
    read = reader.read({"ok.dcm", "zeros"})
    assert next(read)[1] == CT  # what came before the bomb was handed out whole
    with pytest.raises(ArchiveLimitError):
        next(read)


def test_tar_pax_header_bomb_is_refused_without_holding_it(tmp_path: Path) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 6 << 30
    block = header.tobuf(tarfile.USTAR_FORMAT)
    path = tmp_path / "pax.tar"
    path.write_bytes(block + bytes(1 << 20))
    with pytest.raises(ArchiveLimitError, match="metadata header"):
        open_archive(path, SMALL).entries()


def test_not_an_archive_and_corrupt_archives(tmp_path: Path) -> None:
    (tmp_path / "ct.dcm").write_bytes(CT)
    with pytest.raises(ArchiveError, match="not a zip"):
        open_archive(tmp_path / "ct.dcm", SMALL)
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        for i in range(5):
            _tar_member(tf, f"f{i}", os.urandom(50_000))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:60_000])
    with pytest.raises(ArchiveError, match="corrupt"):
        open_archive(cut, SMALL).entries()
    gz_dicom = PYDICOM_FILES / "zipMR.gz"  # gzip around a DICOM file, no tar inside
    with pytest.raises(ArchiveError, match=r"corrupt tar\.gz"):
        open_archive(gz_dicom, SMALL).entries()


def test_repeated_names_get_distinct_keys(tmp_path: Path) -> None:
    path = tmp_path / "dup.tar"
    with tarfile.open(path, "w") as tf:
        _tar_member(tf, "a/ct.dcm", b"1")
        _tar_member(tf, "./a//ct.dcm", b"2")
    keys = [e.key for e in open_archive(path, SMALL).entries()]
    assert keys == ["a/ct.dcm", "a/ct.dcm#2"]
    assert [d for _, d in open_archive(path, SMALL).read(set(keys))] == [b"1", b"2"]


@given(st.text(alphabet=st.sampled_from("ab./\\:\x00"), max_size=12))
def test_a_name_without_problem_stays_inside_the_root(name: str) -> None:
    if name_problem(name):
        return
    parts: list[str] = []
    for part in PurePosixPath(name.replace("\\", "/")).parts:
        assert part not in ("..", "/")
        parts.append(part)
    assert not name.replace("\\", "/").startswith("/")
