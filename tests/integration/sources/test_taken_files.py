"""Imports that remove their files once imported let the archive take the files themselves.

A watched folder with ``after_import: remove`` and an ``import_files`` job with ``cleanup``
link each file into the blob store instead of writing a copy (no data written twice); every
other import copies, and so does intake whenever the stored bytes differ from the file's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dicomgate.archive import blobstore
from dicomgate.archive.models import Instance
from dicomgate.intake.receive import Intake
from dicomgate.jobs import JobStatus
from dicomgate.sources.config import AfterImport
from dicomgate.sources.files import KIND as IMPORT_FILES
from tests.integration.sources.helpers import inline_jobs, write_study
from tests.integration.sources.test_watched_folder import _claim, _watch

pytestmark = pytest.mark.skipif(blobstore._SYNCFS is None, reason="files are taken with syncfs")


def _write_study(folder: Path, count: int) -> list[str]:
    """Write a study whose files have a zeroed preamble (CT_small.dcm's is a TIFF header)."""
    uids = write_study(folder, count)
    for path in folder.rglob("IM*"):
        path.write_bytes(bytes(128) + path.read_bytes()[128:])
    return uids


def _inodes(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_ino for path in folder.rglob("IM*")}


def _blobs(intake: Intake) -> dict[str, tuple[int, bytes]]:
    """Return SOP Instance UID -> (inode, bytes) of every stored blob."""
    with intake.db.reader() as session:
        rows = session.execute(select(Instance.sop_instance_uid, Instance.blob_key)).all()
    found = {}
    for uid, key in rows:
        path = intake.blobs.path(key)
        found[uid] = (path.stat().st_ino, path.read_bytes())
    return found


@pytest.mark.parametrize("after", [AfterImport.REMOVE, AfterImport.MOVE])
def test_a_watched_folder_takes_its_files_only_when_it_removes_them(
    intake: Intake, tmp_path: Path, after: AfterImport
) -> None:
    jobs = inline_jobs(intake)
    watcher, clock = _watch(tmp_path, jobs, after_import=after)
    drop = tmp_path / "inbox" / "folder1"
    uids = _write_study(drop / "scan1", 4)
    contents = {p.name: p.read_bytes() for p in drop.rglob("IM*")}
    dropped = set(_inodes(drop).values())
    [job_id] = _claim(watcher, clock)
    assert jobs.run_inline(job_id).status is JobStatus.SUCCEEDED
    blobs = _blobs(intake)
    assert set(blobs) == set(uids)
    assert sorted(data for _, data in blobs.values()) == sorted(contents.values())
    inodes = {inode for inode, _ in blobs.values()}
    if after is AfterImport.REMOVE:
        assert inodes == dropped and not drop.exists()
    else:  # the files in done/ stay the user's: the archive has copies
        assert not inodes & dropped
        done = tmp_path / "inbox" / "done"
        assert {p.name: p.read_bytes() for p in done.rglob("IM*")} == contents


def test_a_file_whose_preamble_intake_zeroes_is_copied(intake: Intake, tmp_path: Path) -> None:
    jobs = inline_jobs(intake)
    watcher, clock = _watch(tmp_path, jobs)
    drop = tmp_path / "inbox" / "folder1"
    _write_study(drop, 2)
    marked = drop / "IM00000"
    data = bytearray(marked.read_bytes())
    data[:128] = b"vendor preamble".ljust(128, b"!")
    marked.write_bytes(bytes(data))
    dropped = set(_inodes(drop).values())
    [job_id] = _claim(watcher, clock)
    assert jobs.run_inline(job_id).status is JobStatus.SUCCEEDED
    blobs = list(_blobs(intake).values())
    assert len([inode for inode, _ in blobs if inode in dropped]) == 1  # the other one
    assert all(stored[:128] == bytes(128) for _, stored in blobs)
    assert bytes(128) + bytes(data[128:]) in [stored for _, stored in blobs]


@pytest.mark.parametrize("cleanup", [True, False])
def test_an_import_takes_its_files_only_with_cleanup(
    intake: Intake, tmp_path: Path, cleanup: bool
) -> None:
    folder = tmp_path / "drop"
    _write_study(folder, 3)
    dropped = set(_inodes(folder).values())
    jobs = inline_jobs(intake)
    params = {"paths": [str(folder)], "cleanup": cleanup}
    assert jobs.run_inline(jobs.submit(IMPORT_FILES, params)).status is JobStatus.SUCCEEDED
    inodes = {inode for inode, _ in _blobs(intake).values()}
    assert (inodes == dropped) is cleanup
    assert (not inodes & dropped) is not cleanup
    assert folder.exists() is not cleanup


def test_the_import_processes_take_files_too(
    intake: Intake, tmp_path: Path, two_processes: None
) -> None:
    folder = tmp_path / "drop"
    _write_study(folder, 30)
    dropped = set(_inodes(folder).values())
    jobs = inline_jobs(intake)
    params = {"paths": [str(folder)], "cleanup": True}
    job = jobs.run_inline(jobs.submit(IMPORT_FILES, params))
    assert job.status is JobStatus.SUCCEEDED and job.counts == {"stored": 30}
    assert {inode for inode, _ in _blobs(intake).values()} == dropped
    assert not folder.exists()
    links = {path.stat().st_nlink for path in intake.blobs.root.rglob("*") if path.is_file()}
    assert links == {1}  # the import's names are gone; each blob has only the store's
