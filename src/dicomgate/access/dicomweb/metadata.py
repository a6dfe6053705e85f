"""Prepared DICOM JSON: built once per stored instance, served by concatenation.

A follower of the change log prepares each new or replaced instance once intake has been quiet
for a moment, off the receive path; a metadata request that comes first builds what is missing
and caches it.
The cache is derived data in its own table: it never changes the index or the blobs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dicomgate.access.dicomweb.models import FollowerPosition, InstanceMetadata
from dicomgate.access.dicomweb.resources import Scope, StoredInstance, Target, by_pk, instances
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.models import Change, utcnow
from dicomgate.db import Database
from dicomgate.dicom.dicom_json import file_to_json_text

log = logging.getLogger(__name__)

BASE = "{+base}"
FOLLOWER = "metadata"
_CHANGES = ("new_instance", "replaced_instance")


def bulk_prefix(row: StoredInstance) -> str:
    """Return the bulk data URI prefix of one instance (``{+base}`` is the service root)."""
    return (
        f"{BASE}/studies/{row.study_uid}/series/{row.series_uid}"
        f"/instances/{row.sop_instance_uid}/bulkdata/"
    )


def build(blobs: FilesystemBlobStore, row: StoredInstance, threshold: int) -> str | None:
    """Return the DICOM JSON text of one stored instance; None when its file cannot be read."""
    try:
        return file_to_json_text(blobs.path(row.blob_key), bulk_prefix(row), threshold)
    except Exception as exc:
        log.warning("cannot prepare metadata of instance %s (%s)", row.pk, type(exc).__name__)
        return None


def _save(session: Session, prepared: dict[int, tuple[str, str]]) -> None:
    """Upsert: the follower and a first request may prepare the same instance at once."""
    if not prepared:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    rows = [
        {"instance_pk": pk, "sha256": sha, "json": text, "prepared_at": utcnow()}
        for pk, (sha, text) in prepared.items()
    ]
    statement = insert(InstanceMetadata).values(rows)
    excluded = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[InstanceMetadata.instance_pk],
            set_={
                "sha256": excluded.sha256,
                "json": excluded.json,
                "prepared_at": excluded.prepared_at,
            },
        )
    )


def prepare(
    db: Database, blobs: FilesystemBlobStore, rows: Sequence[StoredInstance], threshold: int
) -> dict[int, str]:
    """Build and cache the metadata of ``rows``; return instance pk -> JSON text."""
    prepared: dict[int, tuple[str, str]] = {}
    for row in rows:
        text = build(blobs, row, threshold)
        if text is not None:
            prepared[row.pk] = (row.sha256, text)
    if prepared:
        with db.unit_of_work() as session:
            _save(session, prepared)
    return {pk: text for pk, (_sha, text) in prepared.items()}


def _cached(session: Session, rows: Sequence[StoredInstance]) -> dict[int, str]:
    wanted = {row.pk: row.sha256 for row in rows}
    query = select(InstanceMetadata.instance_pk, InstanceMetadata.sha256, InstanceMetadata.json)
    found: dict[int, str] = {}
    pks = list(wanted)
    for start in range(0, len(pks), 900):  # stay below SQLite's bound-parameter limit
        chunk = pks[start : start + 900]
        for pk, sha, text in session.execute(query.where(InstanceMetadata.instance_pk.in_(chunk))):
            if wanted[pk] == sha:  # a replaced instance has a new digest: rebuild it
                found[pk] = text
    return found


def metadata_json(
    db: Database,
    blobs: FilesystemBlobStore,
    target: Target,
    scope: Scope,
    threshold: int,
) -> list[str]:
    """Return the prepared DICOM JSON texts of the instances ``target`` names, in order.

    Raises
    ------
    NotFoundError
        When nothing visible to ``scope`` matches.
    """
    with db.reader() as session:
        rows = instances(session, target, scope)
        found = _cached(session, rows)
    missing = [row for row in rows if row.pk not in found]
    if missing:
        found.update(prepare(db, blobs, missing, threshold))
    return [found[row.pk] for row in rows if row.pk in found]


_YIELD_EVERY = 20  # instances prepared between two looks at whether intake is busy again


def follow_once(
    db: Database,
    blobs: FilesystemBlobStore,
    batch: int,
    threshold: int,
    busy: Callable[[], bool] = lambda: False,
) -> int:
    """Prepare the instances of the next ``batch`` changes; return how many changes were read.

    Every ``_YIELD_EVERY`` changes it asks ``busy()``; when intake has become busy again it
    saves what it prepared and stops, so a burst of stores after a quiet spell waits for at
    most that many instances' preparation (about 20-40 ms), not a whole batch's.
    """
    with db.reader() as session:
        position = session.get(FollowerPosition, FOLLOWER)
        since = position.seq if position else 0
        changes = session.execute(
            select(Change.seq, Change.change_type, Change.resource_pk)
            .where(Change.seq > since)
            .order_by(Change.seq)
            .limit(batch)
        ).all()
        pks = sorted({pk for _seq, kind, pk in changes if kind in _CHANGES})
        rows = {row.pk: row for row in by_pk(session, pks)} if pks else {}
    if not changes:
        return 0
    prepared: dict[int, tuple[str, str]] = {}
    read = 0
    while read < len(changes):
        for _seq, kind, pk in changes[read : read + _YIELD_EVERY]:
            row = rows.get(pk) if kind in _CHANGES else None
            if row is not None and pk not in prepared and (text := build(blobs, row, threshold)):
                prepared[pk] = (row.sha256, text)
        read = min(read + _YIELD_EVERY, len(changes))
        if read < len(changes) and busy():
            break
    _record(db, prepared, changes[read - 1][0])
    return read


def _record(db: Database, prepared: dict[int, tuple[str, str]], seq: int) -> None:
    """Save prepared metadata and the follower's position (the last change read) together."""
    with db.unit_of_work() as session:
        _save(session, prepared)
        position = session.get(FollowerPosition, FOLLOWER)
        if position is None:
            session.add(FollowerPosition(name=FOLLOWER, seq=seq))
        else:
            position.seq = seq


def newest_change(db: Database) -> int:
    """Return the sequence number of the newest change (0 for an empty log)."""
    with db.reader() as session:
        return int(session.execute(select(func.max(Change.seq))).scalar() or 0)


def follow_when_quiet(
    db: Database, blobs: FilesystemBlobStore, batch: int, threshold: int, *, seen: int
) -> tuple[int, int]:
    """Run ``follow_once`` unless the log grew past ``seen``; return (newest seq, changes read).

    Intake writing since the last look means instances are still arriving: preparing now
    would take the CPU (and, in this process, the GIL) from them, and a sender waits for each
    one in turn. Nothing is read then; the next look, if the log stayed quiet, prepares, and
    stops as soon as the log grows again.
    """
    newest = newest_change(db)
    if newest != seen:
        return newest, 0
    return newest, follow_once(db, blobs, batch, threshold, lambda: newest_change(db) != newest)


_BACKGROUND_NICENESS = 10  # added to the process's own


def _yield_the_cpu() -> None:
    """Lower this thread's CPU priority (Linux; elsewhere nothing happens).

    Preparing metadata is background work: right after a large load it took about half the
    CPU for seconds, and a C-GET served from the archive meanwhile (by a receiver process)
    ran at two thirds of its rate. On Linux a thread is a task with its own niceness.
    """
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + _BACKGROUND_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))
    except OSError:  # not permitted in this sandbox or container: run at the usual priority
        log.debug("metadata follower: could not lower its priority", exc_info=True)


class MetadataFollower:
    """A thread that follows the change log and prepares metadata once intake is quiet.

    While instances keep arriving (the log grew during the last ``interval``), it waits: a
    metadata request meanwhile builds what it needs itself (``metadata_json``).

    Parameters
    ----------
    db, blobs
        The index and the blob store.
    interval
        Seconds to wait when the log has nothing new.
    batch
        Changes read per pass (one transaction writes their metadata).
    threshold
        Binary values longer than this become bulk data URIs.
    """

    def __init__(
        self,
        db: Database,
        blobs: FilesystemBlobStore,
        interval: float,
        batch: int,
        threshold: int,
    ) -> None:
        self._args = (db, blobs, batch, threshold)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dicomweb-metadata", daemon=True)

    def start(self) -> None:
        """Start following."""
        self._thread.start()

    def _run(self) -> None:
        _yield_the_cpu()
        seen = -1
        while not self._stop.is_set():
            try:
                seen, read = follow_when_quiet(*self._args, seen=seen)
            except Exception:
                log.exception("metadata preparation failed; retrying")
                read = 0
            if read < self._args[2]:
                self._stop.wait(self._interval)

    def stop(self) -> None:
        """Stop after the current pass."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
