"""What intake did with the instances of a retrieve, read back from the index.

The stores of a C-MOVE land in whichever receiving process takes the node's association; only
the process that sent the move hears of them directly. The others stored them under the job's
origin (``sources.moves``), so the index tells the rest: an instance in a staging session of
the job's source was stored by it, one kept aside with the job's origin was refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import select

from dicomgate.archive.models import Instance, SetAside, StagingSession
from dicomgate.duplicate_policy import DuplicatePolicy
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import Intake, Outcome, ReceiveResult
from dicomgate.sources.moves import origin_to_json

_CHUNK = 500


def _chunks(uids: Iterable[str]) -> Iterator[list[str]]:
    wanted = list(uids)
    for start in range(0, len(wanted), _CHUNK):
        yield wanted[start : start + _CHUNK]


def _indexed(intake: Intake, uids: list[str]) -> dict[str, tuple[int, str | None]]:
    """Return ``sop uid -> (instance pk, source key of its staging session)``."""
    query = (
        select(Instance.sop_instance_uid, Instance.pk, StagingSession.source_key)
        .outerjoin(StagingSession, StagingSession.pk == Instance.staging_pk)
        .where(Instance.sop_instance_uid.in_(uids))
    )
    with intake.db.reader() as session:
        return {str(uid): (int(pk), key) for uid, pk, key in session.execute(query)}


def _set_aside(intake: Intake, uids: list[str], origin: Origin) -> dict[str, tuple[str, str]]:
    """Return ``sop uid -> (reason, message)`` of the items kept aside with ``origin``."""
    query = select(
        SetAside.sop_instance_uid, SetAside.reason, SetAside.message, SetAside.origin
    ).where(SetAside.sop_instance_uid.in_(uids))
    ours: dict[str, Any] = origin_to_json(origin)
    with intake.db.reader() as session:
        rows = session.execute(query).all()
    return {str(uid): (reason, message) for uid, reason, message, row in rows if row == ours}


def _refused(intake: Intake, uid: str, aside: tuple[str, str], pk: int | None) -> ReceiveResult:
    reason, message = aside
    kept = intake.duplicate_policy is not DuplicatePolicy.REJECT
    if reason == "conflicting_duplicate" and kept and pk is not None:
        return ReceiveResult(Outcome.CONFLICTING, uid, pk, reason=message)
    return ReceiveResult(Outcome.REJECTED, uid, reason=f"{reason}: {message}")


def arrived(intake: Intake, origin: Origin, uids: Iterable[str]) -> dict[str, ReceiveResult]:
    """Return the intake result of each of ``uids`` that arrived, as the index records it.

    Stored under ``origin``'s source: stored; kept aside with ``origin``: conflicting or
    rejected; in the index under another source: already stored.
    """
    found: dict[str, ReceiveResult] = {}
    for chunk in _chunks(uids):
        indexed = _indexed(intake, chunk)
        # Only what is not stored under the job's source can have been refused for it.
        others = [uid for uid in chunk if indexed.get(uid, (0, None))[1] != origin.source_key]
        aside = _set_aside(intake, others, origin) if others else {}
        for uid in chunk:
            pk, key = indexed.get(uid, (None, None))
            if pk is not None and key == origin.source_key:
                found[uid] = ReceiveResult(Outcome.STORED, uid, pk)
            elif uid in aside:
                found[uid] = _refused(intake, uid, aside[uid], pk)
            elif pk is not None:
                found[uid] = ReceiveResult(Outcome.ALREADY_STORED, uid, pk)
    return found
