"""Receive the files of an import in batches: read and parse ahead, store and record per batch.

Each batch is read and parsed (once: header and hash, by ``intake.receive.prepare``), then
received with one blob flush and one index transaction (``sources.batch_settle``), and its
items are recorded in one more transaction right after; only then are they handed to
``after`` (a watched folder moves its files then). A small import does that on the job's
thread, with a few threads reading and parsing the next batch while one is stored. A large
one (``sources.import_processes``) has a pool of processes read, parse and store a few batches
at once; the job's thread records their answers in batch order.

A crash between the two commits leaves the batch's items pending: the resumed run finds them
stored and records them as stored by this job (``JobContext.record_receive``). An instance
whose storing failed is not recorded (it stays pending for a retry); its batch-mates are
recorded all the same, then the first such error is raised.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from dicomgate.errors import RetriableError, StorageError
from dicomgate.intake.origin import Origin
from dicomgate.intake.spec import IntakeSpec
from dicomgate.jobs import JobContext
from dicomgate.jobs.store import ItemRecord
from dicomgate.sources import import_processes
from dicomgate.sources.batch_settle import Load, Planned, ReceivedItem, Recorded, Settled, settle

__all__ = ["Load", "Planned", "Recorded", "run_batches"]

BATCH_ITEMS = 200  # instances per batch: one blob flush and two commits for all of them
FIRST_BATCH = 8  # the first batch of an import; each next one is twice as large
BATCH_BYTES = 64 * 1024 * 1024  # and at most this much file data (two batches are in memory)
After = Callable[[Planned, Recorded], None]
Pairs = list[tuple[Planned, Origin]]


def run_batches(
    ctx: JobContext,
    items: list[Planned],
    load: Load,
    origin: Callable[[Planned], Origin],
    after: After | None = None,
    workers: int = 1,
) -> Iterator[Recorded]:
    """Receive and record every item in batches; yield each recorded outcome.

    Parameters
    ----------
    ctx
        The running job.
    items
        The pending items.
    load
        Reads and prepares one item: a module-level function (import processes are handed it).
    origin
        The origin of an item's instance (called on the job's thread).
    after
        Called once an item's outcome is committed.
    workers
        Threads reading and parsing ahead, when the batches are stored on the job's thread.

    Stops between batches once the job is cancelled (the rest stays pending).

    Raises
    ------
    RetriableError
        When the archive could not store an instance (after the others were recorded), or
        an import process died.
    """
    batches = [[(item, origin(item)) for item in batch] for batch in _batches(items)]
    spec = IntakeSpec.of(ctx.intake)
    pool = import_processes.pool_for(len(items)) if spec.shareable else None
    if pool is None:
        yield from _in_threads(ctx, batches, load, after, workers)
    else:
        yield from _in_processes(ctx, batches, load, after, (pool, spec))


def _in_threads(
    ctx: JobContext, batches: list[Pairs], load: Load, after: After | None, workers: int
) -> Iterator[Recorded]:
    """Store each batch on this thread while ``workers`` threads read the next one."""
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix=f"read-{ctx.job_id[:8]}") as pool:
        ahead: list[Future[Any]] = []
        for number, batch in enumerate(batches):
            loading = ahead or [pool.submit(load, *pair) for pair in batch]
            if ctx.cancelled():
                break
            if number + 1 < len(batches):  # read the next batch while this one is stored
                ahead = [pool.submit(load, *pair) for pair in batches[number + 1]]
            planned = [item for item, _ in batch]
            answers = settle(ctx.intake, planned, [future.result() for future in loading])
            yield from _record(ctx, planned, answers, after)


def _in_processes(
    ctx: JobContext,
    batches: list[Pairs],
    load: Load,
    after: After | None,
    where: tuple[ProcessPoolExecutor, IntakeSpec],
) -> Iterator[Recorded]:
    """Have the import processes settle a few batches at once; record them in order.

    Once the job is cancelled no batch is handed out any more; those a process has already
    taken are stored all the same, so they are waited for and recorded too.
    """
    pool, spec = where
    in_flight = import_processes.process_count() + 1  # one queued, so no process waits
    queue = iter(batches)
    futures: deque[tuple[list[Planned], Future[list[Settled]]]] = deque()
    try:
        while True:
            if ctx.cancelled():
                _cancel_queued(futures)  # not handed to a process yet: they stay pending
            else:
                for batch in itertools.islice(queue, in_flight - len(futures)):
                    future = import_processes.submit(pool, spec, load, batch)
                    futures.append(([item for item, _ in batch], future))
            if not futures:
                return
            planned, future = futures.popleft()
            yield from _record(ctx, planned, future.result(), after)
    except BrokenProcessPool as exc:
        import_processes.discard(pool)
        raise RetriableError("an import process died; its batches stay pending") from exc
    finally:
        _cancel_queued(futures)
        for _planned, future in futures:
            future.exception()  # nothing of this job runs on once it returned


def _cancel_queued(futures: deque[tuple[list[Planned], Future[list[Settled]]]]) -> None:
    """Cancel the batches no process has taken yet; keep (in order) those it has."""
    taken = [(planned, future) for planned, future in futures if not future.cancel()]
    futures.clear()
    futures.extend(taken)


def _batches(items: list[Planned]) -> Iterator[list[Planned]]:
    """Cut ``items`` into batches that grow from FIRST_BATCH to BATCH_ITEMS items.

    Small first batches show progress (and the first outcomes) soon; later ones are large so
    their flush and commits are shared by many instances.
    """
    batch: list[Planned] = []
    size, limit = 0, FIRST_BATCH
    for item in items:
        length = _size(item) if item.outcome is None else 0
        if batch and (len(batch) >= limit or size + length > BATCH_BYTES):
            yield batch
            batch, size, limit = [], 0, min(2 * limit, BATCH_ITEMS)
        batch.append(item)
        size += length
    if batch:
        yield batch


def _size(item: Planned) -> int:
    try:
        return os.lstat(item.path).st_size if item.path is not None else 0
    except OSError:
        return 0  # found out when it is read


def _record(
    ctx: JobContext, batch: Sequence[Planned], answers: Sequence[Settled], after: After | None
) -> list[Recorded]:
    """Record every item of a settled batch, then call ``after``; raise its first error."""
    records: list[tuple[Planned, ItemRecord]] = []
    failure: Exception | None = None
    for item, answer in zip(batch, answers, strict=True):
        if isinstance(answer, Exception):
            failure = failure or answer  # not recorded: the item stays pending for a retry
        elif isinstance(answer, ReceivedItem):
            records.append((item, _record_of(ctx, item, answer)))
        else:
            records.append((item, ItemRecord(item.key, *answer)))
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


def _record_of(ctx: JobContext, item: Planned, answer: ReceivedItem) -> ItemRecord:
    result = answer.result
    rec = ctx.receive_record(item.key, result)
    if item.listed is None or not answer.disagrees:
        return rec
    differ = list(answer.disagrees)
    reason = "the DICOMDIR record disagrees with the file header on " + ", ".join(differ)
    detail: dict[str, Any] = {"intake": result.outcome.value, "disagrees": differ}
    detail["record"] = item.listed.expected
    return ItemRecord(item.key, rec.outcome, result.reason or reason, detail)


def _raise(failure: Exception) -> None:
    if isinstance(failure, StorageError):
        raise RetriableError(f"the archive could not store an instance: {failure}") from failure
    raise failure
