"""What becomes of one batch of an import: read, prepare and receive it, nothing recorded yet.

``settle`` is the part of a batch that needs no job: it runs on the job's own thread, or in
an import process (``sources.import_processes``) with that process's intake. Its answer per
item is small and picklable: the outcome decided without intake, what intake did (with the
DICOMDIR fields the header disagrees on), or the error that kept the instance from being
stored. The job then records the answers (``sources.batches``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dicomgate.archive.blobstore import TakenFile
from dicomgate.intake.batch import receive_batch
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import Intake, Prepared, ReceiveResult, prepare
from dicomgate.jobs import ItemOutcome
from dicomgate.sources.dicomdir import Listed, disagreements

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
    take
        The import removes the file once it is imported, so the archive may take the file
        itself (a hard link, see ``archive.blobstore.TakenFile``) instead of a copy.
    """

    key: str
    path: Path | None = None
    outcome: ItemOutcome | None = None
    reason: str = ""
    listed: Listed | None = None
    take: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedItem:
    """What intake did with the instance of one item.

    Parameters
    ----------
    result
        Intake's result.
    disagrees
        The DICOMDIR record's fields the file's header disagrees with (none without a record).
    """

    result: ReceiveResult
    disagrees: tuple[str, ...] = ()


def prepare_read(
    item: Planned, origin: Origin, data: bytes, info: os.stat_result | None
) -> Prepared:
    """Prepare the bytes read from ``item``'s file (``info``: its ``fstat`` while read).

    When the import gives the file up (``take``) and intake stores it byte for byte (a Part-10
    file with a zeroed preamble), the file itself is offered to the blob store.
    """
    prepared = prepare(data, origin)
    parsed = prepared.parsed
    if not item.take or info is None or item.path is None or parsed is None:
        return prepared
    if parsed.data is not data:  # intake zeroed the preamble or added the meta: a new blob
        return prepared
    return replace(prepared, source=TakenFile.of(str(item.path), info))


Settled = Recorded | ReceivedItem | Exception  # one item's answer; an Exception was not stored
# Read and prepare one item (on any thread or process): a module-level function, so that an
# import process can be handed it.
Load = Callable[[Planned, Origin], "Prepared | Recorded"]


def settle(
    intake: Intake, batch: Sequence[Planned], loaded: Sequence[Prepared | Recorded]
) -> list[Settled]:
    """Receive the prepared instances of ``batch`` (``loaded`` in the same order) in one go."""
    prepared = [load for load in loaded if isinstance(load, Prepared)]
    received = iter(receive_batch(intake, prepared))
    answers: list[Settled] = []
    for item, load in zip(batch, loaded, strict=True):
        if not isinstance(load, Prepared):
            answers.append(load)
            continue
        result = next(received)
        if isinstance(result, Exception):
            answers.append(result)
        elif item.listed is None or load.parsed is None:
            answers.append(ReceivedItem(result))
        else:
            differ = disagreements(item.listed, load.parsed.header)
            answers.append(ReceivedItem(result, tuple(differ)))
    return answers


def load_and_settle(
    intake: Intake, load: Load, batch: Sequence[tuple[Planned, Origin]]
) -> list[Settled]:
    """Read, prepare and receive a batch on this thread (what an import process does)."""
    return settle(intake, [item for item, _ in batch], [load(*pair) for pair in batch])
