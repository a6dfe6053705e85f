"""Start-up reconciliation: leftovers of a crash are cleared, a concurrent writer's are not."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from dicomgate.archive import blobstore
from dicomgate.archive.blobstore import TEMP_SUFFIX, TakenFile
from dicomgate.archive.models import Instance, SetAside
from dicomgate.archive.reconcile import SETTLE_SECONDS, reconcile
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, receive
from tests.conftest import PYDICOM_FILES

ORIGIN = Origin(OriginKind.IMPORT, user="tester")


def _later() -> float:
    """The clock of a start-up long after the files were written."""
    return time.time() + SETTLE_SECONDS + 60


def test_old_leftovers_are_cleared_and_the_archive_kept(intake: Intake) -> None:
    result = receive(intake, (PYDICOM_FILES / "CT_small.dcm").read_bytes(), ORIGIN)
    assert result.outcome is Outcome.STORED
    orphan = intake.blobs.create(b"written, never indexed: a crash before the commit")
    temp = intake.blobs.path(orphan).with_name("0" * 32 + TEMP_SUFFIX)
    temp.write_bytes(b"half a blob")
    report = reconcile(intake.db, intake.blobs, intake.set_aside, clock=_later)
    assert report.temp_removed == 1 and not temp.exists()
    assert len(report.orphans_set_aside) == 1 and not intake.blobs.exists(orphan)
    [aside_key] = report.orphans_set_aside
    assert intake.set_aside.read(aside_key).startswith(b"written, never indexed")
    with intake.db.reader() as session:
        assert list(session.scalars(select(SetAside.reason))) == ["unindexed_blob"]
        [key] = session.scalars(select(Instance.blob_key))
    assert intake.blobs.exists(key) and report.missing_blobs == [] and report.recent_left == 0


def test_recent_unindexed_files_are_left_for_a_writer_about_to_index_them(
    intake: Intake,
) -> None:
    # Another process on the same data folder wrote this blob and is about to commit its row.
    in_flight = intake.blobs.create(b"a blob whose row is being committed elsewhere")
    temp = intake.blobs.path(in_flight).with_name("1" * 32 + TEMP_SUFFIX)
    temp.write_bytes(b"being written elsewhere")
    report = reconcile(intake.db, intake.blobs, intake.set_aside)
    assert report.recent_left == 2 and report.orphans_set_aside == []
    assert report.temp_removed == 0 and temp.exists() and intake.blobs.exists(in_flight)
    with intake.db.reader() as session:
        assert list(session.scalars(select(SetAside.reason))) == []
    # At a later start-up, long after, they are what a crash left behind.
    later = reconcile(intake.db, intake.blobs, intake.set_aside, clock=_later)
    assert later.temp_removed == 1 and len(later.orphans_set_aside) == 1


@pytest.mark.skipif(blobstore._SYNCFS is None, reason="files are taken with syncfs")
def test_a_file_linked_in_just_now_is_recent_however_old_its_contents(
    intake: Intake, tmp_path: Path
) -> None:
    # An import handed over a file dropped an hour ago (``TakenFile``); its row is not
    # committed yet. Its modification time is the drop's: the link is what is recent.
    dropped = tmp_path / "dropped.dcm"
    dropped.write_bytes(b"dropped an hour ago")
    then = time.time() - 3600
    os.utime(dropped, (then, then))
    (key,) = intake.blobs.create_many(
        [b"dropped an hour ago"], [TakenFile.of(str(dropped), os.stat(dropped))]
    )
    assert os.stat(intake.blobs.path(key)).st_ino == os.stat(dropped).st_ino
    report = reconcile(intake.db, intake.blobs, intake.set_aside)
    assert report.recent_left == 1 and report.orphans_set_aside == []
    assert intake.blobs.exists(key)


def test_an_indexed_blob_that_is_gone_is_reported(intake: Intake) -> None:
    receive(intake, (PYDICOM_FILES / "CT_small.dcm").read_bytes(), ORIGIN)
    with intake.db.reader() as session:
        [(pk, key)] = session.execute(select(Instance.pk, Instance.blob_key)).all()
    intake.blobs.remove(key)
    report = reconcile(intake.db, intake.blobs, intake.set_aside)
    assert report.missing_blobs == [pk] and report.orphans_set_aside == []
