"""Reads and writes of job rows; every function takes the session and never commits."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dicomgate.archive.models import utcnow
from dicomgate.errors import NotFoundError
from dicomgate.jobs.models import Job, JobItem, JobLog
from dicomgate.jobs.statuses import ItemOutcome, JobStatus

_CHUNK = 500


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Return ``value`` as an aware UTC datetime (SQLite hands back naive UTC values)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def key_hash(key: str) -> str:
    """Return the hash an item key is unique by (keys may be long paths)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def create_job(session: Session, kind: str, params: dict[str, Any], owner: str | None) -> str:
    """Insert a PENDING job and return its id."""
    job_id = uuid.uuid4().hex
    now = utcnow()
    session.add(
        Job(
            id=job_id,
            kind=kind,
            params=params,
            owner=owner,
            status=JobStatus.PENDING,
            message="queued",
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    return job_id


def get_job(session: Session, job_id: str, lock: bool = False) -> Job:
    """Return the job row, locked for update when ``lock``.

    Raises
    ------
    NotFoundError
        When there is no such job.
    """
    query = select(Job).where(Job.id == job_id)
    job = session.scalars(query.with_for_update() if lock else query).first()
    if job is None:
        raise NotFoundError("no such job")
    return job


@functools.cache
def _add_items_statement(dialect: str) -> Any:
    insert_ignore = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_ignore(JobItem.__table__).on_conflict_do_nothing()  # type: ignore[arg-type]


def add_items(session: Session, job_id: str, keys: Iterable[str]) -> None:
    """Insert the expected items that are not there yet and refresh the job's total."""
    # One cached statement run for many rows (executemany), not a statement with 6 binds a row.
    statement = _add_items_statement(session.get_bind().dialect.name)
    rows: dict[str, str] = {key_hash(k): k for k in keys}
    now = utcnow()
    values = [
        {"job_id": job_id, "key_hash": h, "key": k, "reason": "", "detail": {}, "updated_at": now}
        for h, k in rows.items()
    ]
    for start in range(0, len(values), _CHUNK):
        session.connection().execute(statement, values[start : start + _CHUNK])
    total = session.scalar(select(func.count()).where(JobItem.job_id == job_id)) or 0
    session.execute(
        update(Job).where(Job.id == job_id).values(total=total, planned=True, updated_at=now)
    )


def pending_keys(session: Session, job_id: str) -> list[str]:
    """Return the keys of the job's items that have no outcome yet, in insertion order."""
    query = (
        select(JobItem.key)
        .where(JobItem.job_id == job_id, JobItem.outcome.is_(None))
        .order_by(JobItem.pk)
    )
    return list(session.scalars(query))


def record_item(
    session: Session,
    job_id: str,
    key: str,
    outcome: ItemOutcome,
    reason: str,
    detail: dict[str, Any],
) -> None:
    """Set one item's outcome (adding the item if it was not expected) and the job's counts."""
    digest, now = key_hash(key), utcnow()
    item = session.scalars(
        select(JobItem).where(JobItem.job_id == job_id, JobItem.key_hash == digest)
    ).first()
    added = item is None
    old = None if item is None else item.outcome
    if item is None:
        item = JobItem(job_id=job_id, key_hash=digest, key=key)
        session.add(item)
    item.outcome, item.reason, item.detail, item.updated_at = outcome.value, reason, detail, now
    was_error = old is not None and ItemOutcome(old).error
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            total=Job.total + int(added),
            done=Job.done + int(old is None),
            errors=Job.errors + int(outcome.error) - int(was_error),
            updated_at=now,
        )
    )


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One item's outcome, to record with ``record_items``."""

    key: str
    outcome: ItemOutcome
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def record_items(session: Session, job_id: str, records: Iterable[ItemRecord]) -> None:
    """Set many items' outcomes at once (as ``record_item`` does for one) and the job's counts."""
    by_hash = {key_hash(r.key): r for r in records}  # the last record of a key wins
    old = _item_rows(session, job_id, list(by_hash))
    now = utcnow()
    changed, added = [], []
    for digest, rec in by_hash.items():
        values = {"outcome": rec.outcome.value, "reason": rec.reason, "detail": rec.detail}
        if digest in old:
            changed.append({"pk": old[digest][0], **values, "updated_at": now})
        else:
            added.append({"job_id": job_id, "key_hash": digest, "key": rec.key, **values})
    if changed:
        session.execute(update(JobItem), changed)
    if added:
        session.execute(insert(JobItem), [{**row, "updated_at": now} for row in added])
    previous = [old[d][1] if d in old else None for d in by_hash]
    errors = sum(r.outcome.error for r in by_hash.values())
    errors -= sum(1 for o in previous if o is not None and ItemOutcome(o).error)
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            total=Job.total + len(added),
            done=Job.done + sum(1 for o in previous if o is None),
            errors=Job.errors + errors,
            updated_at=now,
        )
    )


def _item_rows(
    session: Session, job_id: str, digests: list[str]
) -> dict[str, tuple[int, str | None]]:
    """Return the items of ``job_id`` with these key hashes: hash -> (pk, outcome)."""
    found: dict[str, tuple[int, str | None]] = {}
    for start in range(0, len(digests), _CHUNK):
        query = select(JobItem.key_hash, JobItem.pk, JobItem.outcome).where(
            JobItem.job_id == job_id, JobItem.key_hash.in_(digests[start : start + _CHUNK])
        )
        for digest, pk, outcome in session.execute(query):
            found[digest] = (int(pk), outcome)
    return found


def reset_items(session: Session, job_id: str, outcomes: Iterable[ItemOutcome]) -> int:
    """Make the items with one of ``outcomes`` pending again; return how many."""
    names = [o.value for o in outcomes]
    result = session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, JobItem.outcome.in_(names))
        .values(outcome=None, reason="", detail={}, updated_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def refresh_counts(session: Session, job_id: str) -> None:
    """Recount total, done and errors of a job from its items."""
    query = select(JobItem.outcome, func.count()).where(JobItem.job_id == job_id)
    counts = dict(session.execute(query.group_by(JobItem.outcome)).all())
    done = sum(n for o, n in counts.items() if o is not None)
    errors = sum(n for o, n in counts.items() if o is not None and ItemOutcome(o).error)
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(total=sum(counts.values()), done=done, errors=errors, updated_at=utcnow())
    )


def outcome_counts(session: Session, job_id: str) -> dict[str, int]:
    """Return the number of items per outcome (``pending`` for those without one)."""
    query = select(JobItem.outcome, func.count()).where(JobItem.job_id == job_id)
    rows = session.execute(query.group_by(JobItem.outcome)).all()
    return {(o or "pending"): int(n) for o, n in rows}


def mark_pending(session: Session, job_id: str, outcome: ItemOutcome, reason: str) -> int:
    """Give every pending item ``outcome`` with ``reason``; return how many."""
    result = session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, JobItem.outcome.is_(None))
        .values(outcome=outcome.value, reason=reason, updated_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def append_log(session: Session, job_id: str, message: str) -> None:
    """Append a line to the job's log."""
    session.add(JobLog(job_id=job_id, message=message, created_at=utcnow()))
