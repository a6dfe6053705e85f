"""``RawStatement`` against real SQLite and PostgreSQL: the same rows Core would write."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from dicomgate.archive.models import Change, StagingSession
from dicomgate.db import Database
from dicomgate.raw_sql import PerDialect, RawStatement, listed, one_of

_CHANGE_COLUMNS = ["change_type", "resource_type", "resource_pk", "created_at"]
_INSERT_CHANGE = RawStatement(
    insert(Change.__table__).returning(Change.__table__.c.seq),  # type: ignore[arg-type]
    _CHANGE_COLUMNS,
)
_WHEN = dt.datetime(2026, 12, 6, 15, 4, 5, 123456, tzinfo=dt.UTC)


def _change(pk: int) -> dict[str, object]:
    return {"change_type": "t", "resource_type": "r", "resource_pk": pk, "created_at": _WHEN}


def test_insert_returns_the_key_and_stores_what_core_stores(database: Database) -> None:
    with database.unit_of_work() as session:
        raw_seq = _INSERT_CHANGE.returned(session, _change(1))
        core_seq = session.execute(
            insert(Change.__table__).returning(Change.__table__.c.seq),  # type: ignore[arg-type]
            _change(2),
        ).scalar_one()
    with database.reader() as session:
        rows = {row.seq: row for row in session.scalars(select(Change))}
    assert raw_seq != core_seq
    raw, core = rows[raw_seq], rows[core_seq]
    assert (raw.change_type, raw.resource_pk) == ("t", 1)
    assert raw.created_at == core.created_at  # the datetime went through the bind processor


def test_update_counts_rows_and_binds_the_statements_literals(database: Database) -> None:
    with database.unit_of_work() as session:
        row = StagingSession(
            source_key="k", study_uid="1.2", status="RECEIVING", origin={}, instance_count=1
        )
        session.add(row)
        session.flush()
        pk = row.pk
    touch = RawStatement(
        update(StagingSession)
        .where(StagingSession.pk == bindparam("pk"), StagingSession.status == "RECEIVING")
        .values(instance_count=StagingSession.instance_count + bindparam("count"))
    )
    with database.unit_of_work() as session:
        assert touch.rowcount(session, {"pk": pk, "count": 2}) == 1
        assert touch.rowcount(session, {"pk": pk + 1, "count": 2}) == 0
    with database.reader() as session:
        assert session.get_one(StagingSession, pk).instance_count == 3


def test_a_driver_error_is_sqlalchemys_and_rolls_back_with_the_unit(database: Database) -> None:
    values: dict[str, object] = {
        "pk": 7,
        "source_key": "k",
        "study_uid": "1.2",
        "status": "RECEIVING",
        "origin": {"kind": "dimse"},
        "reasons": [],
        "instance_count": 0,
        "created_at": _WHEN,
        "last_received_at": _WHEN,
        "updated_at": _WHEN,
    }
    insert_unique = RawStatement(insert(StagingSession.__table__), list(values))  # type: ignore[arg-type]
    with pytest.raises(IntegrityError), database.unit_of_work() as session:
        insert_unique.rowcount(session, values)
        insert_unique.rowcount(session, values)  # the same primary key again
    with database.reader() as session:
        assert session.get(StagingSession, 7) is None  # the unit of work rolled back
    with database.unit_of_work() as session:
        insert_unique.rowcount(session, values)
    with database.reader() as session:
        assert session.get_one(StagingSession, 7).origin == {"kind": "dimse"}  # JSON bound


def test_a_select_returns_every_row_with_its_literals_bound(database: Database) -> None:
    table = Change.__table__
    latest = RawStatement(
        select(table.c.seq, table.c.resource_pk)
        .where(table.c.change_type == "t")
        .order_by(table.c.seq.desc())
        .limit(2)
    )
    with database.unit_of_work() as session:
        assert latest.rows(session, {}) == []
        for pk in (1, 2, 3):
            _INSERT_CHANGE.returned(session, _change(pk))
        rows = latest.rows(session, {})
    assert [pk for _seq, pk in rows] == [3, 2]  # the LIMIT's literal was bound


def test_a_missing_column_value_is_an_error_not_null(database: Database) -> None:
    values = _change(1)
    del values["created_at"]
    with pytest.raises(KeyError, match="created_at"), database.unit_of_work() as session:
        _INSERT_CHANGE.returned(session, values)


def test_a_column_default_left_out_is_refused_at_compile(database: Database) -> None:
    partial = RawStatement(insert(Change.__table__), _CHANGE_COLUMNS[:3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="created_at"), database.unit_of_work() as session:
        partial.rowcount(session, _change(1))


def test_a_begin_the_driver_refuses_is_sqlalchemys_error(tmp_path: Path) -> None:
    """``BEGIN IMMEDIATE`` goes to SQLite's driver directly; its errors stay SQLAlchemy's."""
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        with db.engine.connect() as conn:
            conn.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]
            with pytest.raises(OperationalError, match="within a transaction"):
                conn.begin()
    finally:
        db.dispose()


_CHANGES_OF = PerDialect(
    lambda dialect: (
        select(Change.resource_pk, Change.change_type)
        .where(
            one_of(dialect, Change.resource_pk, "pks"), one_of(dialect, Change.change_type, "types")
        )
        .order_by(Change.resource_pk)
    )
)


@pytest.mark.parametrize("count", [0, 1, 3, 2000])
def test_one_of_binds_a_list_of_any_length_as_one_value(database: Database, count: int) -> None:
    with database.unit_of_work() as session:
        for pk in range(1, 4):
            _INSERT_CHANGE.returned(session, _change(pk))
    wanted = [2, *range(1000, 1000 + count - 1)] if count else []
    with database.read_connection() as connection:
        dialect = connection.dialect.name
        statement = _CHANGES_OF.of(dialect)
        params = {"pks": listed(dialect, wanted), "types": listed(dialect, ["t", "x'y"])}
        rows = statement.rows(connection, params)
    assert rows == ([(2, "t")] if count else [])
    assert _CHANGES_OF.of(dialect) is statement  # built once per dialect
