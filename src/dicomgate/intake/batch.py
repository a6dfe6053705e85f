"""``receive_many()``: the instances of one request stored with one sync pass, one transaction.

A STOW-RS request of many instances is answered only when all of them are durable; storing
them together costs one round of concurrent fsyncs in one directory and one index commit,
instead of one round and one commit each. Every instance keeps its own result: a malformed or
duplicate instance does not fail the others (it takes the one-by-one path of ``receive()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from sqlalchemy.exc import IntegrityError

from dicomgate.dicom.part10 import NotDicomError, Part10
from dicomgate.group_commit import Job
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import (
    Intake,
    Outcome,
    ReceiveResult,
    _check_uids,
    _index,
    _keep_aside,
    _store_new,
    digest_of,
)


def receive_many(intake: Intake, items: Sequence[Part10], origin: Origin) -> list[ReceiveResult]:
    """Take parsed instances in together; return one result per item, in order.

    Raises
    ------
    StorageError
        When the blobs cannot be written (then none of them is stored).
    """
    results: list[ReceiveResult | None] = [None] * len(items)
    fresh: list[tuple[int, Part10, str]] = []
    for n, parsed in enumerate(items):
        try:
            _check_uids(parsed.header)
        except NotDicomError as exc:
            results[n] = _keep_aside(intake, parsed.data, origin, "malformed", str(exc), None)
            continue
        fresh.append((n, parsed, digest_of(parsed)))
    keys = intake.blobs.create_many([parsed.data for _n, parsed, _digest in fresh])
    works = [
        partial(_index, parsed=parsed, origin=origin, digest=digest, key=key, known=intake.known)
        for (_n, parsed, digest), key in zip(fresh, keys, strict=True)
    ]
    try:
        jobs = intake.writer.run_all(works) if works else []
    except BaseException:
        for key in keys:
            intake.blobs.remove(key)
        raise
    for (n, parsed, digest), key, job in zip(fresh, keys, jobs, strict=True):
        results[n] = _settle(intake, parsed, origin, digest, key, job)
    return [result for result in results if result is not None]


def _settle(
    intake: Intake,
    parsed: Part10,
    origin: Origin,
    digest: str,
    key: str,
    job: Job[tuple[int, int, int]],
) -> ReceiveResult:
    try:
        series_pk, staging_pk, instance_pk = job.outcome()
    except IntegrityError:
        # A duplicate (of a stored instance or of another part) or a remembered row that is
        # gone: the one-by-one path sorts both out.
        intake.blobs.remove(key)
        return _store_new(intake, parsed, origin, digest)
    except BaseException:
        intake.blobs.remove(key)
        raise
    header = parsed.header
    staging = (origin.source_key, str(header.StudyInstanceUID))
    intake.known.remember(str(header.SeriesInstanceUID), series_pk, staging, staging_pk)
    return ReceiveResult(Outcome.STORED, str(header.SOPInstanceUID), instance_pk, staging_pk)
