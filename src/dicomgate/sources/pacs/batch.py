"""Retrieve a list of patients, studies or series: the loop the job and the CLI share.

Each target is listed (IMAGE-level find) and retrieved; a target the node knows nothing about
is recorded as missing under the key ``<LEVEL>:<uid>``. Outside the node's window the loop
either waits for the opening (CLI) or lets :class:`WindowClosedError` through (a job defers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dicomgate.dicom.query import QueryLevel, level_of
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import InvalidInputError, WindowClosedError
from dicomgate.sources.pacs.retrieve import Ledger, Retriever, list_expected, retrieve_all


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to retrieve: a patient (by Patient ID), a study or a series."""

    level: QueryLevel
    uid: str
    study_uid: str | None = None

    @property
    def key(self) -> str:
        """Return the ledger key used when the node finds nothing for this target."""
        return f"{self.level.value}:{self.uid}"

    def as_dict(self) -> dict[str, Any]:
        """Return the target as job parameters."""
        return {"level": self.level.value, "uid": self.uid, "study_uid": self.study_uid}


def target_from(data: dict[str, Any]) -> Target:
    """Return a target from parameters, checking the UIDs.

    Raises
    ------
    InvalidInputError
        On an unknown level or an invalid UID.
    """
    level = level_of(str(data.get("level", "STUDY")))
    uid = str(data.get("uid", "")).strip()
    study_uid = data.get("study_uid") or None
    if level is QueryLevel.IMAGE:
        raise InvalidInputError("retrieve PATIENT, STUDY or SERIES targets")
    if not uid or (level is not QueryLevel.PATIENT and not is_valid_uid(uid)):
        raise InvalidInputError(f"not a valid {level.value} identifier")
    if level is QueryLevel.SERIES and not (study_uid and is_valid_uid(str(study_uid))):
        raise InvalidInputError("a SERIES target needs its study_uid")
    return Target(level, uid, str(study_uid) if study_uid else None)


def retrieve_target(retriever: Retriever, target: Target, ledger: Ledger) -> int:
    """List and retrieve one target; return how many instances it expected."""
    expected = list_expected(retriever.client, target.level, target.uid, target.study_uid)
    if not expected:
        ledger.expect([target.key])
        if target.key in ledger.pending():
            detail = {"level": target.level.value}
            ledger.record_missing(target.key, "the node found no instances for it", detail)
        return 0
    retrieve_all(retriever, expected, ledger)
    return len(expected)


def retrieve_targets(
    retriever: Retriever,
    targets: Iterable[Target],
    ledger: Ledger,
    wait: bool,
    progress: Callable[[Target, int], None] | None = None,
) -> None:
    """Retrieve every target; outside the window wait (``wait``) or raise WindowClosedError."""
    for target in targets:
        while True:
            if ledger.cancelled():
                return
            try:
                count = retrieve_target(retriever, target, ledger)
                break
            except WindowClosedError as exc:
                if not wait:
                    raise
                now = retriever.clock.now()
                ledger.log(f"window closed; waiting until {exc.resume_at.isoformat()}")
                retriever.clock.sleep(max(1.0, (exc.resume_at - now).total_seconds()))
        if progress:
            progress(target, count)
