"""The audit trail: who did what, when, from where, with what outcome. Append-only, hash-chained.

It lives in its own database (by default ``audit.sqlite3`` beside the index), apart from the
index so that an index restore or a data-manager's SQL cannot rewrite it. Each record carries
the SHA-256 of its predecessor's hash and its own canonical content; ``verify()`` walks the chain
and names the first record that was changed, removed or inserted. Triggers refuse UPDATE and
DELETE, so rewriting history needs the database file itself, which the chain then exposes.

Records hold internal ids, UIDs, user names and addresses, never PHI.

Every record is committed before ``record()`` returns. Records of reads (``READ_ACTIONS``:
a search, a retrieve) are committed without waiting for the disk unless the setting
``auth.audit_reads_wait_for_disk`` asks for it: a viewer sends one per search, and the disk's
flush was most of a search's time. A crash of dicomgate loses none of them; a crash of the
machine can lose the last ones, never a record of a change, a login or a refusal, whose
commit also puts every read record before it on disk.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Connection, Integer, MetaData, String, Text, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dicomgate.db import Database
from dicomgate.group_commit import GroupCommit
from dicomgate.raw_sql import RawStatement, connection_of

GENESIS = "0" * 64
T = TypeVar("T")
READ_ACTIONS = frozenset({"query", "retrieve", "pacs_query"})  # see the module's docstring


class AuditEvent(enum.Enum):
    """DICOM audit event IDs (PS3.15 A.5, DCM code system) with dicomgate's action names."""

    APPLICATION_ACTIVITY = ("110100", "Application Activity")
    INSTANCES_ACCESSED = ("110103", "DICOM Instances Accessed")
    INSTANCES_TRANSFERRED = ("110104", "DICOM Instances Transferred")
    STUDY_DELETED = ("110105", "DICOM Study Deleted")
    EXPORT = ("110106", "Export")
    IMPORT = ("110107", "Import")
    PATIENT_RECORD = ("110110", "Patient Record")
    QUERY = ("110112", "Query")
    SECURITY_ALERT = ("110113", "Security Alert")
    USER_AUTHENTICATION = ("110114", "User Authentication")

    @property
    def code(self) -> str:
        """Return the DCM code value."""
        return self.value[0]

    @property
    def meaning(self) -> str:
        """Return the code meaning."""
        return self.value[1]


class Outcome(enum.IntEnum):
    """EventOutcomeIndicator values of the DICOM audit message."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


class _Base(DeclarativeBase):
    metadata = MetaData()


class AuditRow(_Base):
    """One audit record."""

    __tablename__ = "audit_records"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[str] = mapped_column(String(32))
    event_code: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[int] = mapped_column(Integer)
    objects: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


_CONTENT = ("seq", "at", "event_code", "action", "actor", "source", "outcome", "objects", "detail")
_LAST = RawStatement(select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1))
_APPEND = RawStatement(insert(AuditRow), [*_CONTENT, "prev_hash", "hash"])

_SQLITE_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_records "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_records "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
]
_PG_GUARDS = [
    "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$",
    "DROP TRIGGER IF EXISTS audit_no_change ON audit_records",
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_records "
    "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
]


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    """Return the hash of a record from its predecessor's hash and its canonical content."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + canonical).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One record as read back."""

    seq: int
    at: str
    event_code: str
    action: str
    actor: str
    source: str
    outcome: int
    objects: dict[str, Any]
    detail: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """Return the record as one JSON-lines object."""
        return {k: getattr(self, k) for k in (*_CONTENT, "hash")}


def _content(row: AuditRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _CONTENT}


def _record(row: AuditRow) -> AuditRecord:
    values = _content(row)
    values["objects"] = json.loads(row.objects)
    return AuditRecord(**values, hash=row.hash)


class ReadAppender:
    """Appends the records of reads, one short transaction each, on a kept connection.

    A viewer's search appends one record, and the search itself takes about as long as an
    append through ``GroupCommit``: its queue, events and an ORM session per transaction were
    three quarters of that. Records of reads need none of it: their commits do not wait for
    the disk, so there is no flush to share. Each append takes the database's write lock, as
    every writer of the trail does, so durable appends and other processes queue with it.

    Parameters
    ----------
    db
        The audit database, opened with ``wait_for_disk=False``.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self.appended = 0  # transactions committed, for tests and statistics

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` in a transaction of its own; return its result."""
        with self._lock, self.db.write_lock:
            conn = self._conn if self._conn is not None else self.db.engine.connect()
            self._conn = None
            try:
                with conn.begin():
                    result = work(conn)
            except BaseException:
                conn.close()  # a connection in an unknown state is not kept
                raise
            self._conn = conn
            self.appended += 1
            return result

    def close(self) -> None:
        """Close the kept connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class AuditTrail:
    """The append-only audit store.

    Parameters
    ----------
    url
        Its database URL (SQLite file or PostgreSQL), separate from the index.
    create
        Create the table and its append-only guards when missing. Receiver worker processes
        pass ``False``: the process that started them did it, and PostgreSQL DDL run by
        several processes at once can fail.
    reads_wait_for_disk
        When False, records of ``READ_ACTIONS`` are committed on a connection of their own
        that does not wait for the disk (see the module's docstring).
    """

    def __init__(self, url: str, create: bool = True, reads_wait_for_disk: bool = True) -> None:
        self.db = Database(url)
        self._writer = GroupCommit(self.db)
        self._reads: GroupCommit | ReadAppender = self._writer
        if not reads_wait_for_disk:
            self._reads = ReadAppender(Database(url, wait_for_disk=False))
        if not create:
            return
        _Base.metadata.create_all(self.db.engine)
        guards = _SQLITE_GUARDS if self.db.is_sqlite else _PG_GUARDS
        with self.db.engine.begin() as conn:
            for statement in guards:
                conn.execute(text(statement))

    def record(
        self,
        event: AuditEvent,
        action: str,
        *,
        actor: str,
        source: str = "",
        outcome: Outcome = Outcome.SUCCESS,
        objects: dict[str, Any] | None = None,
        detail: str = "",
    ) -> int:
        """Append one record; return its sequence number once the record is committed.

        Records of concurrent callers share one transaction and one commit
        (``GroupCommit``); each caller returns only after that commit, which is on disk.
        Records of reads, when reads do not wait for the disk, are committed one by one
        (``ReadAppender``), each before ``record()`` returns.
        """
        values: dict[str, Any] = {
            "event_code": event.code,
            "action": action[:64],
            "actor": actor[:128],
            "source": source[:128],
            "outcome": int(outcome),
            "objects": json.dumps(objects or {}, sort_keys=True),
            "detail": detail,
        }
        writer = self._reads if values["action"] in READ_ACTIONS else self._writer
        return writer.run(partial(self._append, values))

    def _append(self, values: dict[str, Any], session: Session | Connection) -> int:
        # Statements on the driver's cursor: a record is appended for every query a viewer
        # sends (QIDO, C-FIND), where the ORM's unit of work cost about a millisecond and
        # Core's execution about a quarter of a search's time.
        if not self.db.is_sqlite:
            # One appender at a time across processes, so the chain never forks.
            connection_of(session).execute(text("SELECT pg_advisory_xact_lock(7310227)"))
        # Read inside the transaction, after the records before it in the same group.
        last = _LAST.rows(session, {})
        seq, prev = (int(last[0][0]) + 1, str(last[0][1])) if last else (1, GENESIS)
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        row = {**values, "seq": seq, "at": at}
        content = {name: row[name] for name in _CONTENT}
        _APPEND.rowcount(session, {**row, "prev_hash": prev, "hash": chain_hash(prev, content)})
        return seq

    def records(
        self, since: int = 0, limit: int = 1000, action: str | None = None
    ) -> list[AuditRecord]:
        """Return records after ``since`` in order, optionally of one action."""
        with self.db.reader() as session:
            query = select(AuditRow).where(AuditRow.seq > since)
            if action:
                query = query.where(AuditRow.action == action)
            rows = session.scalars(query.order_by(AuditRow.seq).limit(limit))
            return [_record(row) for row in rows]

    def verify(self) -> list[str]:
        """Walk the whole chain; return the problems found (empty when intact)."""
        problems: list[str] = []
        with self.db.reader() as session:
            prev, expected_seq = GENESIS, 1
            for row in _all(session):
                if row.seq != expected_seq:
                    problems.append(f"record {expected_seq}: missing (next is {row.seq})")
                if row.prev_hash != prev:
                    problems.append(f"record {row.seq}: does not follow its predecessor")
                if chain_hash(row.prev_hash, _content(row)) != row.hash:
                    problems.append(f"record {row.seq}: content changed after it was written")
                prev, expected_seq = row.hash, row.seq + 1
        return problems

    def dispose(self) -> None:
        """Close the store's connections."""
        self.db.dispose()
        if isinstance(self._reads, ReadAppender):
            self._reads.close()
            self._reads.db.dispose()


def _all(session: Session) -> Iterator[AuditRow]:
    yield from session.scalars(
        select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=500)
    )
