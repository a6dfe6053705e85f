"""``RawStatement``: a Core statement compiled once per dialect, run on the driver's cursor.

For the few statements of a hot path. Intake writes three rows for every instance it stores,
and every search appends an audit record (a read of the last record, then an insert);
SQLAlchemy's work around each execution (the compiled-cache lookup, an execution context,
events, a result object) cost about as much CPU as SQLite's own. A ``RawStatement`` keeps
what SQLAlchemy would produce (the dialect's SQL and the column types' bind processors, so a
datetime is stored exactly as Core stores it) and hands it to the DBAPI cursor of the
session's connection, inside the session's transaction (or on a Core connection, inside its
transaction). Driver errors come out as SQLAlchemy's (``sqlalchemy.exc.IntegrityError`` for
a duplicate key, as with Core).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Dialect,
    Select,
    any_,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positional: bool
    binds: tuple[tuple[str, bool, Any, _Processor], ...]  # name, given?, default, processor
    dbapi_error: type[Exception]


# Names, in a session's ``info``, the connection whose transaction the session was made on.
SESSION_CONNECTION = "dicomgate.connection"


def connection_of(session: Session | Connection) -> Connection:
    """Return the Core connection a statement runs on: the session's, or the one given.

    A session made on a connection already inside its transaction names that connection in
    ``info`` (``SESSION_CONNECTION``): asking the session for it would begin the session's
    own transaction bookkeeping first, which cost more than the statement run on it. Inside
    a nested transaction the session is asked all the same: it emits the SAVEPOINT when it
    first uses its connection, and the statement must run after it.
    """
    if isinstance(session, Connection):
        return session
    named: Connection | None = session.info.get(SESSION_CONNECTION)
    if named is None or session.in_nested_transaction():
        return session.connection()
    return named


class RawStatement:
    """An INSERT, UPDATE, DELETE or SELECT run on the driver's cursor (see the module docstring).

    Parameters
    ----------
    statement
        The Core statement, with a ``bindparam`` for every value given at execution; a literal
        in it (``status == "RECEIVING"``) is bound as Core binds it.
    columns
        For an INSERT, the columns given at execution (every one with a default included: the
        defaults Core computes per execution are not computed here).
    """

    def __init__(
        self,
        statement: UpdateBase | Select[*tuple[Any, ...]],
        columns: list[str] | None = None,
    ) -> None:
        self.statement = statement
        self.columns = columns
        self._compiled: dict[tuple[str, str, str], _Compiled] = {}

    def rowcount(self, session: Session | Connection, params: Mapping[str, Any]) -> int:
        """Execute with ``params``; return how many rows the statement changed."""
        cursor = self._execute(session, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def returned(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        """Execute a statement with ``RETURNING`` one column; return the single value."""
        return self.rows(session, params)[0][0]

    def rows(
        self, session: Session | Connection, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Execute with ``params``; return every row (of a SELECT or a ``RETURNING``).

        The values are the driver's: no result processor of a column type is applied.
        """
        cursor = self._execute(session, params)
        try:
            # Every row fetched: SQLite keeps the statement running (and the commit refused)
            # until its cursor is exhausted.
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def _execute(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        connection = connection_of(session)
        compiled = self._for(connection.dialect)
        # A column given at execution must be in ``params`` (KeyError), never silently NULL.
        values = [
            (name, params[name] if given else params.get(name, default), processor)
            for name, given, default, processor in compiled.binds
        ]
        args: Any
        if compiled.positional:
            args = [value if proc is None else proc(value) for _n, value, proc in values]
        else:
            args = {name: value if proc is None else proc(value) for name, value, proc in values}
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, args)
        except compiled.dbapi_error as exc:
            cursor.close()
            raise DBAPIError.instance(compiled.sql, args, exc, compiled.dbapi_error) from exc
        return cursor

    def _for(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, str(dialect.driver), str(dialect.paramstyle))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self.statement, self.columns, dialect)
        return compiled


def _compile(
    statement: UpdateBase | Select[*tuple[Any, ...]],
    columns: list[str] | None,
    dialect: Dialect,
) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=columns)
    computed = [*compiled.insert_prefetch, *compiled.update_prefetch]
    if computed:
        missing = ", ".join(column.name for column in computed)
        raise ValueError(
            f"give these columns at execution, their defaults are not computed: {missing}"
        )
    given = set(columns or ())
    binds = tuple(
        (name, name in given, bind.value, _processor(bind.type, dialect))
        for name, bind in ((name, compiled.binds[name]) for name in _names(compiled))
    )
    dbapi = dialect.loaded_dbapi
    return _Compiled(compiled.string, compiled.positiontup is not None, binds, dbapi.Error)


def _names(compiled: Any) -> list[str]:
    """Return the bind names in the order a positional paramstyle takes them."""
    return list(compiled.positiontup or compiled.binds)


def _processor(sql_type: Any, dialect: Dialect) -> _Processor:
    processor: _Processor = sql_type.dialect_impl(dialect).bind_processor(dialect)
    return processor


def one_of(dialect: str, column: Any, name: str) -> ColumnElement[bool]:
    """Return "``column`` is one of the values bound as ``name``" (given by ``listed``).

    The values are bound as one parameter, not one per value (an expanding IN), so the SQL of
    a statement is the same whatever the number of values and is run as compiled
    (``RawStatement``): an array on PostgreSQL, a JSON array read by ``json_each`` on SQLite.
    """
    if dialect == "postgresql":
        in_array: ColumnElement[bool] = column == any_(bindparam(name, type_=ARRAY(column.type)))
        return in_array
    values: Any = select(literal_column("value")).select_from(func.json_each(bindparam(name)))
    in_json: ColumnElement[bool] = column.in_(values.scalar_subquery())
    return in_json


def listed(dialect: str, values: Sequence[Any]) -> Any:
    """Return ``values`` as ``one_of`` binds them."""
    return list(values) if dialect == "postgresql" else json.dumps(list(values))


class PerDialect:
    """A ``RawStatement`` built for each dialect met, for SQL that differs between them.

    Parameters
    ----------
    build
        Makes the statement for a dialect's name (``one_of`` makes different SQL on each).
    """

    def __init__(self, build: Callable[[str], Select[*tuple[Any, ...]]]) -> None:
        self._build = build
        self._made: dict[str, RawStatement] = {}

    def of(self, dialect: str) -> RawStatement:
        """Return the statement of ``dialect`` (built on first use)."""
        made = self._made.get(dialect)
        if made is None:
            made = self._made[dialect] = RawStatement(self._build(dialect))
        return made


class TransactionLostError(RuntimeError):
    """A unit of work's failure took its whole transaction with it, not only its savepoint."""


_SAVEPOINT = "dicomgate_unit"


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """Run the block inside a SAVEPOINT of the session's transaction, sent by the driver.

    SQLAlchemy's ``session.begin_nested()`` cost about 350 us of CPU per unit of work here,
    several times the statements of a stored instance. This savepoint is the driver's alone:
    the session's pending rows are flushed before it is released; when the block raises, it
    is rolled back and the session forgets every object (those written inside it are gone).

    The session does not know of it, so a failed ORM flush in the block makes the session
    roll back the whole transaction (it joined it as "rollback only"), and some errors end a
    SQLite transaction by themselves. Either way the work of the units before it is gone:
    ``TransactionLostError`` is raised (from the block's exception) and the caller must run them
    all again, in a transaction of their own.

    Raises
    ------
    TransactionLostError
        The transaction around the savepoint is no longer there.
    """
    cursor = connection_of(session).connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            yield
            session.flush()
        except Exception as exc:
            _roll_back_to_savepoint(session, cursor, exc)
            raise
        cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    finally:
        cursor.close()


def _roll_back_to_savepoint(session: Session, cursor: Any, cause: Exception) -> None:
    """Undo the savepoint's work after ``cause``; raise TransactionLostError if all is gone."""
    if not session.is_active:  # a failed flush rolled the session's whole transaction back
        raise TransactionLostError(f"the transaction was rolled back: {cause}") from cause
    try:
        cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    except Exception as exc:  # the driver's error: the savepoint (and its transaction) is gone
        raise TransactionLostError(f"the transaction ended with: {cause}") from exc
    session.expunge_all()
