"""Retrieve a list of patients, studies or series: the loop the job and the CLI share.

Each target is listed (IMAGE-level find) and retrieved, the next one listed while the current
one is retrieved; a target the node knows nothing about is recorded as missing under the key
``<LEVEL>:<uid>``. Outside the node's window the loop either waits for the opening (CLI) or
lets :class:`WindowClosedError` through (a job defers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dicomgate.dicom.query import QueryLevel, level_of
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import InvalidInputError, WindowClosedError
from dicomgate.sources.pacs.retrieve import (
    ExpectedInstance,
    Ledger,
    Retriever,
    list_expected,
    retrieve_all,
)


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


def list_target(retriever: Retriever, target: Target) -> list[ExpectedInstance]:
    """Return the instances the node lists for ``target`` (nothing is recorded)."""
    return list_expected(retriever.client, target.level, target.uid, target.study_uid)


def retrieve_target(
    retriever: Retriever,
    target: Target,
    ledger: Ledger,
    expected: list[ExpectedInstance] | None = None,
) -> int:
    """Retrieve one target, listed now or already (``expected``); return how many it expected."""
    if expected is None:
        expected = list_target(retriever, target)
    if not expected:
        ledger.expect([target.key])
        if target.key in ledger.pending():
            detail = {"level": target.level.value}
            ledger.record_missing(target.key, "the node found no instances for it", detail)
        return 0
    retrieve_all(retriever, expected, ledger)
    return len(expected)


class _Listings:
    """Lists the targets of a batch, the next one while the current one is retrieved.

    A cohort's studies were listed one by one between their transfers: each listing (the
    node's IMAGE-level find, 50-250 ms) left the associations idle. The next target's
    listing now runs on one thread beside the retrieve. It takes an association slot like any
    request, so it mostly runs while the retrieve's last requests finish. A listing is only
    a find: its errors (a closed window included) are raised when its target's turn comes,
    as if it had been listed then. A listing finished more than ``fresh_for`` seconds before
    its turn (the current target was large) is made again, so what a target expects is what
    the node held shortly before its retrieve, as without listing ahead.
    """

    def __init__(self, retriever: Retriever, fresh_for: float = 60.0) -> None:
        self.retriever = retriever
        self.fresh_for = fresh_for
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="retrieve-listing")
        self._ahead: tuple[Target, Future[tuple[list[ExpectedInstance], float]]] | None = None

    def __enter__(self) -> _Listings:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def listed(self, target: Target) -> list[ExpectedInstance]:
        """Return ``target``'s listing: the one made ahead if still fresh, else one made now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == target:
            expected, finished = ahead[1].result()
            if time.monotonic() - finished <= self.fresh_for:
                return expected
        return list_target(self.retriever, target)

    def list_ahead(self, target: Target) -> None:
        """Start listing ``target`` in the background."""
        self._ahead = (target, self._pool.submit(self._list_timed, target))

    def _list_timed(self, target: Target) -> tuple[list[ExpectedInstance], float]:
        return list_target(self.retriever, target), time.monotonic()


def retrieve_targets(
    retriever: Retriever,
    targets: Iterable[Target],
    ledger: Ledger,
    wait: bool,
    progress: Callable[[Target, int], None] | None = None,
) -> None:
    """Retrieve every target; outside the window wait (``wait``) or raise WindowClosedError."""
    todo = list(targets)
    with _Listings(retriever) as listings:
        for target, following in zip(todo, [*todo[1:], None], strict=True):
            count = _retrieve_one(retriever, listings, target, following, ledger, wait)
            if count is None:
                return
            if progress:
                progress(target, count)


def _retrieve_one(
    retriever: Retriever,
    listings: _Listings,
    target: Target,
    following: Target | None,
    ledger: Ledger,
    wait: bool,
) -> int | None:
    """Retrieve ``target`` (listing ``following`` meanwhile); None once the batch is cancelled."""
    while True:
        if ledger.cancelled():
            return None
        try:
            expected = listings.listed(target)
            if following is not None:
                listings.list_ahead(following)
            return retrieve_target(retriever, target, ledger, expected)
        except WindowClosedError as exc:
            if not wait:
                raise
            now = retriever.clock.now()
            ledger.log(f"window closed; waiting until {exc.resume_at.isoformat()}")
            retriever.clock.sleep(max(1.0, (exc.resume_at - now).total_seconds()))
