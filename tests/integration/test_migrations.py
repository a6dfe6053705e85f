"""Migration 0109 on a SQLite index with rows: pks, rows, indexes and foreign keys survive."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.migrate import MigrationError, upgrade
from dicomgate.archive.models import Instance, Series
from dicomgate.db import Database
from dicomgate.intake.receive import Intake, Outcome, receive
from tests.integration.prearchive_support import IMPORT, ct, part10

REBUILT = ("patients", "studies", "series", "staging_sessions")


@pytest.fixture()
def old_index(tmp_path: Path) -> Iterator[tuple[Database, Intake]]:
    """A SQLite index at revision 0100 holding three studies (one patient each)."""
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    upgrade(db, "0100")
    intake = Intake(db, FilesystemBlobStore(tmp_path / "b"), FilesystemBlobStore(tmp_path / "s"))
    for n in range(3):
        result = receive(intake, part10(ct(PatientID=f"P{n}")), IMPORT)
        assert result.outcome is Outcome.STORED, result.reason
    yield db, intake
    db.dispose()


def _dump(path: Path) -> tuple[dict[str, list[tuple[object, ...]]], list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in REBUILT}
        rows["instances"] = conn.execute("SELECT * FROM instances ORDER BY 1").fetchall()
        indexes = conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()
    return rows, indexes


def test_upgrade_keeps_rows_pks_indexes_and_foreign_keys(
    old_index: tuple[Database, Intake], tmp_path: Path
) -> None:
    db, intake = old_index
    path = tmp_path / "index.sqlite3"
    before = _dump(path)
    upgrade(db, "0109")  # later revisions add tables and indexes of their own
    assert _dump(path) == before
    with sqlite3.connect(path) as conn:
        for table in REBUILT:
            sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
            assert "AUTOINCREMENT" in sql[0]
        assert dict(conn.execute("SELECT name, seq FROM sqlite_sequence")) == {
            t: 3 for t in REBUILT
        }
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with db.unit_of_work() as session:
        session.execute(delete(Instance).where(Instance.series_pk == 3))
        session.execute(delete(Series).where(Series.pk == 3))
    assert receive(intake, part10(ct()), IMPORT).outcome is Outcome.STORED
    with db.reader() as session:
        assert list(session.scalars(select(Series.pk).order_by(Series.pk))) == [1, 2, 4]
    with pytest.raises(IntegrityError), db.unit_of_work() as session:
        session.execute(text("UPDATE instances SET series_pk = 99 WHERE pk = 1"))


def test_an_upgrade_that_would_leave_a_dangling_row_commits_nothing(
    old_index: tuple[Database, Intake], tmp_path: Path
) -> None:
    db, _ = old_index
    path = tmp_path / "index.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("UPDATE instances SET series_pk = 99 WHERE pk = 1")
    before = _dump(path)
    with pytest.raises(MigrationError, match="instances"):
        upgrade(db)
    assert _dump(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0100",)]
