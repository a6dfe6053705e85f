"""``receive_batch()``: many instances through intake with one blob flush and one transaction.

The same path as ``receive()``, for sources that have many instances at hand (folder imports):
the new instances of a batch are written to the blob store with one flush for all of them
(``create_many``), then indexed in one transaction of the group commit, and only then reported
stored. Everything that needs a decision of its own goes through ``receive_prepared`` one by
one: unreadable bytes, instances the index holds already (checked for the whole batch in one
query, before any blob is written), and a second copy of a SOP Instance UID within the batch.
When the batch's blobs or its transaction fail, nothing of it is kept and each of its
instances is received on its own, so one bad instance never fails its batch-mates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

from pydicom import Dataset
from sqlalchemy.orm import Session

from dicomgate.archive import index
from dicomgate.db import CommitNotDurableError
from dicomgate.dicom.header_values import uid_value
from dicomgate.dicom.part10 import NotDicomError, Part10
from dicomgate.intake.known_rows import KnownRows
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import (
    Intake,
    Outcome,
    Prepared,
    ReceiveResult,
    check_uids,
    digest_of,
    duplicate,
    receive_prepared,
    series_pk_for,
    staging_pk_for,
)

Received = ReceiveResult | Exception  # what became of one instance of a batch


def receive_batch(intake: Intake, items: Sequence[Prepared]) -> list[Received]:
    """Receive every prepared instance; return what became of each, in order.

    An instance whose storing raised gets its exception in its place (the others are stored
    and reported all the same); the caller decides what the error means for the import.
    """
    results: list[Received | None] = [None] * len(items)
    stored = _stored_already(intake, items)
    batch: list[int] = []
    alone: list[int] = []
    uids: set[str] = set()
    for position, item in enumerate(items):
        uid = _uid(item)
        if uid is not None and uid in stored:
            results[position] = _guard(partial(_duplicate, intake, item, stored[uid]))
        elif uid is None or uid in uids:
            alone.append(position)
        else:
            uids.add(uid)
            batch.append(position)
    try:
        for position, result in zip(batch, _store_batch(intake, items, batch), strict=True):
            results[position] = result
    except Exception:
        alone = sorted(batch + alone)
    for position in alone:
        results[position] = _guard(partial(receive_prepared, intake, items[position]))
    return [r if r is not None else RuntimeError("not received") for r in results]


def receive_many(intake: Intake, items: Sequence[Part10], origin: Origin) -> list[Received]:
    """Receive instances parsed already (STOW-RS parts) from one origin, as ``receive_batch``."""
    return receive_batch(intake, [_prepared(parsed, origin) for parsed in items])


def _prepared(parsed: Part10, origin: Origin) -> Prepared:
    try:
        check_uids(parsed.header)
    except NotDicomError as exc:
        return Prepared(parsed.data, origin, None, error=str(exc))
    return Prepared(parsed.data, origin, parsed, digest_of(parsed))


def _uid(item: Prepared) -> str | None:
    return None if item.parsed is None else uid_value(item.parsed.header, "SOPInstanceUID")


def _guard(work: Callable[[], ReceiveResult]) -> Received:
    try:
        return work()
    except Exception as exc:
        return exc


def _duplicate(intake: Intake, item: Prepared, known: index.Stored) -> ReceiveResult:
    assert item.parsed is not None
    return duplicate(intake, item.parsed, item.origin, item.digest, known)


def _stored_already(intake: Intake, items: Sequence[Prepared]) -> dict[str, index.Stored]:
    """Return the instances of ``items`` that the index holds: SOP Instance UID -> row."""
    uids = {uid for uid in map(_uid, items) if uid is not None}
    with intake.db.read_connection() as connection:
        return index.stored_instances(connection, uids)


def _store_batch(intake: Intake, items: Sequence[Prepared], batch: list[int]) -> list[Received]:
    """Store the new instances at ``batch``: one blob flush, one transaction; then remember."""
    if not batch:
        return []
    chosen = [items[position] for position in batch]
    keys = intake.blobs.create_many([_data(item) for item in chosen], [i.source for i in chosen])
    work = partial(_index_batch, items=chosen, keys=keys, known=intake.known)
    try:
        rows = intake.writer.run(work)
    except CommitNotDurableError:
        raise  # the rows may stand: their blobs stay, and nothing is acknowledged
    except BaseException:
        for key in keys:
            intake.blobs.remove(key)
        raise
    results: list[Received] = []
    for item, (series_pk, staging_pk, instance_pk) in zip(chosen, rows, strict=True):
        header = _header(item)
        staging = (item.origin.source_key, uid_value(header, "StudyInstanceUID"))
        intake.known.remember(
            uid_value(header, "SeriesInstanceUID"), series_pk, staging, staging_pk
        )
        uid = uid_value(header, "SOPInstanceUID")
        results.append(ReceiveResult(Outcome.STORED, uid, instance_pk, staging_pk))
    return results


def _data(item: Prepared) -> bytes:
    assert item.parsed is not None
    return item.parsed.data


def _header(item: Prepared) -> Dataset:
    assert item.parsed is not None
    return item.parsed.header


def _index_batch(
    session: Session, *, items: list[Prepared], keys: list[str], known: KnownRows
) -> list[tuple[int, int, int]]:
    """Index the batch: hierarchy and staging rows once each, instances and changes in bulk."""
    series: dict[str, int] = {}
    for item in items:
        uid = uid_value(_header(item), "SeriesInstanceUID")
        if uid not in series:
            series[uid] = series_pk_for(session, _header(item), known)
    staging = _staging_rows(session, items, known)
    rows = []
    for item, key in zip(items, keys, strict=True):
        assert item.parsed is not None
        header = item.parsed.header
        values = {
            "series_pk": series[uid_value(header, "SeriesInstanceUID")],
            "staging_pk": staging[(item.origin.source_key, uid_value(header, "StudyInstanceUID"))],
            "transfer_syntax_uid": item.parsed.transfer_syntax,
            "blob_key": key,
            "size": len(item.parsed.data),
            "sha256": item.digest,
        }
        rows.append(index.instance_row(header, values))
    pks = index.add_instances(session, rows)
    index.log_changes(session, "new_instance", "instance", pks)
    return [(row["series_pk"], row["staging_pk"], pk) for row, pk in zip(rows, pks, strict=True)]


def _staging_rows(
    session: Session, items: list[Prepared], known: KnownRows
) -> dict[tuple[str, str], int]:
    """Open or touch each staging session of the batch once, counting all its instances."""
    keys = [(i.origin.source_key, uid_value(_header(i), "StudyInstanceUID")) for i in items]
    counts = Counter(keys)
    first: dict[tuple[str, str], Prepared] = {}
    for key, item in zip(keys, items, strict=True):
        first.setdefault(key, item)
    return {
        key: staging_pk_for(session, _header(item), item.origin, known, counts[key])
        for key, item in first.items()
    }
