"""Receive the files of an import in batches: read and parse ahead, store and record per batch.

Files are read and parsed (once: header and hash, by ``intake.receive.prepare``) on a few
threads, one batch ahead of the one being stored, so parsing overlaps the waits of the
previous batch's flush and commits. Each batch then goes through ``intake.batch.receive_batch``
(one blob flush, one index transaction) and its items are recorded in one more transaction
right after; only then are they handed to ``after`` (a watched folder moves its files then).
A crash between the two commits leaves the batch's items pending: the resumed run finds them
stored and records them as stored by this job (``JobContext.record_receive``).

An instance whose storing failed is not recorded (it stays pending for a retry); its
batch-mates are recorded all the same, then the first such error is raised.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomgate.errors import RetriableError, StorageError
from dicomgate.intake.batch import Received, receive_batch
from dicomgate.intake.receive import Prepared, ReceiveResult
from dicomgate.jobs import ItemOutcome, JobContext
from dicomgate.jobs.store import ItemRecord
from dicomgate.sources.dicomdir import Listed, disagreements

BATCH_ITEMS = 200  # instances per batch: one blob flush and two commits for all of them
FIRST_BATCH = 8  # the first batch of an import; each next one is twice as large
BATCH_BYTES = 64 * 1024 * 1024  # and at most this much file data (two batches are in memory)
Recorded = tuple[ItemOutcome, str]  # the outcome and reason recorded for an item


@dataclass(frozen=True, slots=True)
class Planned:
    """One expected item of an import.

    Parameters
    ----------
    key
        Its name in the job (a path relative to the import root, an archive item name).
    path
        The file to receive, or None when the outcome is decided already.
    outcome
        The outcome decided without reading (rejected, skipped, missing), or None.
    reason
        Why, for a decided outcome.
    listed
        The DICOMDIR record of the file, to compare its header with.
    """

    key: str
    path: Path | None = None
    outcome: ItemOutcome | None = None
    reason: str = ""
    listed: Listed | None = None


Load = Callable[[Planned], "Prepared | Recorded"]  # read and prepare one item (worker thread)


def run_batches(
    ctx: JobContext,
    items: list[Planned],
    load: Load,
    after: Callable[[Planned, Recorded], None] | None = None,
    workers: int = 1,
) -> Iterator[Recorded]:
    """Receive and record every item in batches; yield each recorded outcome.

    Stops between batches once the job is cancelled (the rest stays pending).

    Raises
    ------
    RetriableError
        When the archive could not store an instance (after the others were recorded).
    """
    batches = list(_batches(items))
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix=f"read-{ctx.job_id[:8]}") as pool:
        ahead: list[Future[Prepared | Recorded]] = []
        for number, batch in enumerate(batches):
            loading = ahead or [pool.submit(load, item) for item in batch]
            if ctx.cancelled():
                break
            if number + 1 < len(batches):  # read the next batch while this one is stored
                ahead = [pool.submit(load, item) for item in batches[number + 1]]
            loaded = [future.result() for future in loading]
            yield from _store(ctx, batch, loaded, after)


def _batches(items: list[Planned]) -> Iterator[list[Planned]]:
    """Cut ``items`` into batches that grow from FIRST_BATCH to BATCH_ITEMS items.

    Small first batches show progress (and the first outcomes) soon; later ones are large so
    their flush and commits are shared by many instances.
    """
    batch: list[Planned] = []
    size, limit = 0, FIRST_BATCH
    for item in items:
        length = _size(item.path) if item.outcome is None else 0
        if batch and (len(batch) >= limit or size + length > BATCH_BYTES):
            yield batch
            batch, size, limit = [], 0, min(2 * limit, BATCH_ITEMS)
        batch.append(item)
        size += length
    if batch:
        yield batch


def _size(path: Path | None) -> int:
    try:
        return os.lstat(path).st_size if path is not None else 0
    except OSError:
        return 0  # found out when it is read


def _store(
    ctx: JobContext,
    batch: list[Planned],
    loaded: list[Prepared | Recorded],
    after: Callable[[Planned, Recorded], None] | None,
) -> list[Recorded]:
    """Receive the prepared instances of one batch, record every item, then call ``after``."""
    prepared = [load for load in loaded if isinstance(load, Prepared)]
    received = iter(receive_batch(ctx.intake, prepared))
    records: list[tuple[Planned, ItemRecord]] = []
    failure: Exception | None = None
    for item, load in zip(batch, loaded, strict=True):
        if not isinstance(load, Prepared):
            records.append((item, ItemRecord(item.key, *load)))
            continue
        result = next(received)
        if isinstance(result, Exception):
            failure = failure or result  # not recorded: the item stays pending for a retry
            continue
        records.append((item, _record_of(ctx, item, load, result)))
    ctx.record_many([rec for _, rec in records])
    for item, rec in records:
        if "disagrees" in rec.detail:
            differ = ", ".join(rec.detail["disagrees"])
            ctx.log(f"a DICOMDIR record disagrees with its file on {differ} (see the item)")
        if after is not None:
            after(item, (rec.outcome, rec.reason))
    if failure is not None:
        _raise(failure)
    return [(rec.outcome, rec.reason) for _, rec in records]


def _record_of(ctx: JobContext, item: Planned, load: Prepared, result: ReceiveResult) -> ItemRecord:
    rec = ctx.receive_record(item.key, result)
    if item.listed is None or load.parsed is None:
        return rec
    differ = disagreements(item.listed, load.parsed.header)
    if not differ:
        return rec
    reason = "the DICOMDIR record disagrees with the file header on " + ", ".join(differ)
    detail: dict[str, Any] = {"intake": result.outcome.value, "disagrees": differ}
    detail["record"] = item.listed.expected
    return ItemRecord(item.key, rec.outcome, result.reason or reason, detail)


def _raise(failure: Received) -> None:
    if isinstance(failure, StorageError):
        raise RetriableError(f"the archive could not store an instance: {failure}") from failure
    if isinstance(failure, Exception):
        raise failure
