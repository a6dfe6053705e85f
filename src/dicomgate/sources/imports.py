"""What every file import does: list what it expects, then receive what is still pending.

A *plan* is the list of expected items of one import (the folder scan, the DICOMDIR records,
the archive entries), each either a file to receive or an outcome decided without reading it
(not DICOM, a link, listed but missing). :func:`run_files` declares the plan to the job and
receives only the items that have no outcome yet, so a job resumed after a crash imports
nothing twice and a job retried after failures reads only the failed files again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from dicomgate.errors import PermanentError, RetriableError, StorageError
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import Outcome, Prepared, ReceiveResult, receive
from dicomgate.jobs import ItemOutcome, JobContext
from dicomgate.sources.archives import ArchiveError, ArchiveLimits, open_archive
from dicomgate.sources.batch_settle import prepare_read
from dicomgate.sources.batches import Planned, Recorded, run_batches
from dicomgate.sources.dicomdir import Media, MediaError, find_dicomdir
from dicomgate.sources.dicomdir import read_media as read_dicomdir
from dicomgate.sources.scan import (
    NOT_DICOM,
    FileKind,
    Found,
    classify,
    looks_like_dicom,
    read_regular_file,
    walk,
)

log = logging.getLogger(__name__)

_BY_INTAKE = {
    Outcome.STORED: ItemOutcome.STORED,
    Outcome.REPLACED: ItemOutcome.STORED,
    Outcome.ALREADY_STORED: ItemOutcome.ALREADY_STORED,
    Outcome.CONFLICTING: ItemOutcome.CONFLICTING,
    Outcome.REJECTED: ItemOutcome.REJECTED,
}
__all__ = ["Planned", "Recorded", "plan_path", "planned_found", "run_archive", "run_files"]
UNLISTED_FILTERED = "not listed in the DICOMDIR (not imported: a study/series filter is set)"
UNLISTED_OTHER = "not listed in the DICOMDIR and not DICOM"


def planned_found(found: Found) -> Planned:
    """Return the plan item of one file a folder walk found."""
    if found.kind is FileKind.DICOM:
        return Planned(found.key, found.path)
    if found.kind is FileKind.SPECIAL:
        return Planned(found.key, outcome=ItemOutcome.SKIPPED, reason=found.reason)
    return Planned(found.key, outcome=ItemOutcome.REJECTED, reason=found.reason)


def plan_media(media: Media, study: str | None = None, series: str | None = None) -> list[Planned]:
    """Return the plan of a DICOMDIR import: its records (filtered), then unlisted files."""
    plan = [
        Planned(listed.key, listed.path, listed=listed)
        if not listed.problem
        else Planned(listed.key, outcome=_problem_outcome(listed.problem), reason=listed.problem)
        for listed in media.files(study, series)
    ]
    for found in media.unlisted:
        if found.kind is not FileKind.DICOM:
            reason = found.reason if found.kind is FileKind.SPECIAL else UNLISTED_OTHER
            plan.append(Planned(found.key, outcome=ItemOutcome.SKIPPED, reason=reason))
        elif study or series:
            plan.append(Planned(found.key, outcome=ItemOutcome.SKIPPED, reason=UNLISTED_FILTERED))
        else:
            plan.append(Planned(found.key, found.path))
    return plan


def _problem_outcome(problem: str) -> ItemOutcome:
    return ItemOutcome.REJECTED if problem.startswith("refused") else ItemOutcome.MISSING


def plan_path(root: Path, study: str | None = None, series: str | None = None) -> list[Planned]:
    """Return the plan of importing ``root``: through its DICOMDIR if it has one, else a scan.

    Raises
    ------
    MediaError
        When the folder has a DICOMDIR that cannot be read, or a filter is given without one.
    """
    if root.is_dir() and not root.is_symlink() and find_dicomdir(root) is not None:
        return plan_media(read_dicomdir(root), study, series)
    if study or series:
        raise MediaError("--study and --series need a folder holding a DICOMDIR")
    if root.is_dir() and not root.is_symlink():
        return [planned_found(found) for found in walk(root)]
    return [planned_found(classify(root, root.name))]


def outcome_of(result: ReceiveResult) -> ItemOutcome:
    """Return the job item outcome of an intake result."""
    return _BY_INTAKE[result.outcome]


def load_planned(item: Planned, origin: Origin) -> Prepared | Recorded:
    """Read and prepare one planned file, or return the outcome it gets without intake."""
    if item.outcome is not None or item.path is None:
        return item.outcome or ItemOutcome.MISSING, item.reason
    try:
        data, info = read_regular_file(item.path)
    except FileNotFoundError:
        return ItemOutcome.MISSING, "the file vanished before it was read"
    except OSError as exc:
        return ItemOutcome.FAILED, f"cannot be read: {exc.strerror or exc}"
    return prepare_read(item, origin, data, info)


def receive_bytes(ctx: JobContext, key: str, data: bytes, origin: Origin) -> Recorded:
    """Hand ``data`` to intake and record the result under ``key``; return what was recorded."""
    try:
        result = receive(ctx.intake, data, origin)
    except StorageError as exc:
        raise RetriableError(f"the archive could not store {key!r}: {exc}") from exc
    ctx.record_receive(key, result)
    return outcome_of(result), result.reason


def run_files(
    ctx: JobContext,
    plan: list[Planned],
    origin: Callable[[Planned], Origin],
    after: Callable[[Planned, Recorded], None] | None = None,
    workers: int = 1,
) -> Counter[ItemOutcome]:
    """Declare ``plan`` to the job, then receive every item still pending, in batches.

    Parameters
    ----------
    ctx
        The running job.
    plan
        What the import expects.
    origin
        The origin of each received file.
    after
        Called once an item's outcome is committed (watched folders move the file then).
    workers
        Threads reading and parsing files ahead of the batch being stored (a large import
        is read, parsed and stored by the import processes instead).

    Returns
    -------
    Counter
        The outcomes recorded by this run.
    """
    ctx.expect(item.key for item in plan)
    pending = set(ctx.pending())
    todo = [item for item in plan if item.key in pending]
    received = run_batches(ctx, todo, load_planned, origin, after, workers)
    counts = Counter(outcome for outcome, _ in received)
    if ctx.cancelled():
        ctx.log("cancelled; the remaining items stay pending")
    ctx.log(f"{counts.total()} items processed, {len(plan) - len(todo)} were done already")
    return counts


def keys(plan: Iterable[Planned]) -> list[str]:
    """Return the keys of a plan."""
    return [item.key for item in plan]


def run_archive(
    ctx: JobContext, path: Path, limits: ArchiveLimits, origin: Callable[[str], Origin]
) -> Counter[ItemOutcome]:
    """Declare the entries of an archive file to the job, then receive the pending ones.

    Raises
    ------
    PermanentError
        When the archive cannot be read or exceeds a cap (a zip bomb ends the job here;
        what was received before stays received and recorded).
    """
    try:
        reader = open_archive(path, limits)
        entries = reader.entries()
    except ArchiveError as exc:
        raise PermanentError(str(exc)) from exc
    ctx.expect(entry.key for entry in entries)
    pending = set(ctx.pending())
    counts: Counter[ItemOutcome] = Counter()
    for entry in entries:
        if entry.problem and entry.key in pending:
            ctx.record(entry.key, ItemOutcome.REJECTED, entry.problem)
            counts[ItemOutcome.REJECTED] += 1
    wanted = {e.key for e in entries if not e.problem and e.key in pending}
    try:
        for entry, data in reader.read(wanted):
            if ctx.cancelled():
                ctx.log("cancelled; the remaining entries stay pending")
                break
            counts[_receive_entry(ctx, entry.key, entry.problem, data, origin)[0]] += 1
    except ArchiveError as exc:
        raise PermanentError(str(exc)) from exc
    return counts


def _receive_entry(
    ctx: JobContext, key: str, problem: str, data: bytes, origin: Callable[[str], Origin]
) -> Recorded:
    if problem or not looks_like_dicom(data[:132]):
        ctx.record(key, ItemOutcome.REJECTED, problem or NOT_DICOM)
        return ItemOutcome.REJECTED, problem or NOT_DICOM
    return receive_bytes(ctx, key, data, origin(key))
