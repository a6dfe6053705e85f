"""Retrieve from a remote node into intake, verifiably.

Before moving, an IMAGE-level find lists the expected instances; each series is then retrieved
(C-MOVE to our receiver, or C-GET on our own association), and what arrived is reconciled
against the list. A series that keeps failing is retried with backoff and then reported as
missing, never failing the batch. Instances the index already holds are not retrieved again.
The progress goes to a :class:`Ledger` (the job's items, or a plain one for the CLI).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy import select

from dicomgate.archive.models import Instance
from dicomgate.dicom.nodes import RemoteNode, RetrieveMethod
from dicomgate.dicom.politeness import Clock
from dicomgate.dicom.query import QueryLevel
from dicomgate.dicom.remote import RemoteNodeClient, RetrieveCounts
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import RemoteNodeError, WindowClosedError
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import Intake, Outcome, ReceiveResult, receive
from dicomgate.sources.moves import MoveRegistry
from dicomgate.sources.pacs.arrivals import arrived as found_in_index
from dicomgate.sources.scp import store_status

log = logging.getLogger(__name__)

_RETRY_BY_UID_LIST = 500  # a retry asks for the missing instances by UID up to this many
_PART_AT_LEAST = 50  # a series is split for spare associations into parts of this many or more
_SETTLE_POLLS = (0.05, 0.1, 0.2, 0.5)  # seconds between looks at the index, then 0.5 s
_LISTED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True, slots=True)
class ExpectedInstance:
    """One instance the node said it holds, from the IMAGE-level find.

    ``sop_classes`` is what a C-GET must propose for it: its SOP Class UID when the node listed
    it per instance, else the SOP classes of its study; empty for a C-MOVE, which never needs
    them.
    """

    sop_uid: str
    sop_classes: tuple[str, ...]
    series_uid: str
    study_uid: str


class Ledger(Protocol):
    """Where a retrieve reports: the expected items and each one's outcome."""

    def expect(self, keys: Iterable[str]) -> None:
        """Declare the expected item keys (idempotent)."""

    def pending(self) -> list[str]:
        """Return the expected keys without a final outcome."""

    def record_receives(self, results: Mapping[str, ReceiveResult]) -> None:
        """Record what intake did with arrived instances (item key -> result), at once."""

    def record_missing(self, key: str, reason: str, detail: dict[str, Any]) -> None:
        """Record an expected instance that did not arrive."""

    def record_request(self, series_uid: str, counts: RetrieveCounts) -> None:
        """Record one C-MOVE / C-GET request with its sub-operation counts."""

    def log(self, message: str) -> None:
        """Add a line to the log (no PHI)."""

    def cancelled(self) -> bool:
        """Return True when the retrieve should stop."""


@dataclass
class RetrievePolicy:
    """How hard to try one series."""

    attempts: int = 3
    backoff: float = 5.0
    settle_timeout: float = 10.0


def list_expected(
    client: RemoteNodeClient, level: QueryLevel, uid: str, study_uid: str | None = None
) -> list[ExpectedInstance]:
    """Return the instances of a patient, study or series, by IMAGE-level finds.

    Only the UIDs are asked for: a node may pay for every key (Orthanc reads each instance's
    file for ``SOPClassUID``, which doubled its answer's time). A C-GET also needs the SOP
    classes to propose; they are asked once per study (``SOPClassesInStudy``), and per
    instance only from a node that does not answer that.
    """
    if level is QueryLevel.PATIENT:
        studies = client.find(
            QueryLevel.STUDY, {"PatientID": uid}, ["StudyInstanceUID"], default_keys=False
        )
        found: list[ExpectedInstance] = []
        for row in studies:
            found.extend(list_expected(client, QueryLevel.STUDY, row["StudyInstanceUID"]))
        return found
    study = study_uid or (uid if level is QueryLevel.STUDY else "")
    keys: dict[str, str] = {"StudyInstanceUID": study}
    if level is QueryLevel.SERIES:
        keys["SeriesInstanceUID"] = uid
    elif level is QueryLevel.IMAGE:
        keys["SOPInstanceUID"] = uid
    classes: tuple[str, ...] = ()
    per_instance = False
    if client.node.retrieve_method is RetrieveMethod.C_GET:
        classes = study_sop_classes(client, study)
        per_instance = not classes
    wanted = (*_LISTED, "SOPClassUID") if per_instance else _LISTED
    rows = client.find(QueryLevel.IMAGE, keys, wanted, default_keys=False)
    return [
        ExpectedInstance(
            row["SOPInstanceUID"],
            (row["SOPClassUID"],) if per_instance else classes,
            row["SeriesInstanceUID"],
            row["StudyInstanceUID"],
        )
        for row in rows
        if row["SOPInstanceUID"]
    ]


def study_sop_classes(client: RemoteNodeClient, study_uid: str) -> tuple[str, ...]:
    """Return the SOP classes the node lists for a study; empty when it lists none."""
    if not study_uid:
        return ()
    keys = {"StudyInstanceUID": study_uid}
    rows = _optional_find(client, QueryLevel.STUDY, keys, "SOPClassesInStudy") or []
    listed = {uid for row in rows for uid in row["SOPClassesInStudy"].split("\\")}
    return tuple(sorted(uid for uid in listed if is_valid_uid(uid)))


def _optional_find(
    client: RemoteNodeClient, level: QueryLevel, keys: Mapping[str, Any], wanted: str
) -> list[dict[str, str]] | None:
    """Return the rows of a find for ``wanted`` (and ``keys``) only; None when the node fails it.

    For keys a retrieve can do without (the SOP classes a C-GET proposes): a node that refuses
    them is logged, not an error. A closed window still stops the retrieve.
    """
    try:
        return client.find(level, keys, [wanted], default_keys=False)
    except WindowClosedError:
        raise
    except RemoteNodeError as exc:
        log.info("node %s: no %s (%s)", client.node.name, wanted, exc)
        return None


def in_index(intake: Intake, uids: Iterable[str]) -> dict[str, int]:
    """Return ``sop_uid -> instance pk`` for the given UIDs the index already holds."""
    wanted = list(uids)
    found: dict[str, int] = {}
    with intake.db.reader() as session:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = select(Instance.sop_instance_uid, Instance.pk).where(
                Instance.sop_instance_uid.in_(chunk)
            )
            found.update({str(uid): int(pk) for uid, pk in session.execute(query)})
    return found


@dataclass
class Retriever:
    """Retrieves series from one node for one origin (the job's)."""

    client: RemoteNodeClient
    intake: Intake
    origin: Origin
    moves: MoveRegistry
    clock: Clock
    policy: RetrievePolicy = field(default_factory=RetrievePolicy)

    @property
    def node(self) -> RemoteNode:
        """Return the node retrieved from."""
        return self.client.node

    def _move(
        self, level: QueryLevel, keys: dict[str, Any]
    ) -> tuple[RetrieveCounts, dict[str, ReceiveResult]]:
        destination = self.node.move_destination or self.client.local_ae
        registered = self.moves.register(self.intake.db, self.client.local_ae, self.origin)
        with registered as (msg_id, move):
            counts = self.client.move(level, keys, destination, msg_id)
            return counts, move.arrived()

    def _get(
        self, level: QueryLevel, keys: dict[str, Any], sop_classes: set[str]
    ) -> tuple[RetrieveCounts, dict[str, ReceiveResult]]:
        arrived: dict[str, ReceiveResult] = {}

        def on_store(data: bytes, transfer_syntax: str) -> tuple[int, str]:
            try:
                result = receive(self.intake, data, self.origin, transfer_syntax)
            except Exception as exc:
                log.exception("C-GET store failed (node %s)", self.node.name)
                return 0xA700, str(exc)
            if result.sop_instance_uid:
                arrived[result.sop_instance_uid] = result
            return store_status(result)

        counts = self.client.get(level, keys, sop_classes, on_store)
        return counts, arrived

    def request(
        self, instances: list[ExpectedInstance], whole_series: bool
    ) -> tuple[RetrieveCounts, dict[str, ReceiveResult]]:
        """Send one retrieve request for ``instances`` (their series, or them by UID)."""
        first = instances[0]
        keys: dict[str, Any] = {"StudyInstanceUID": first.study_uid}
        level = QueryLevel.SERIES
        keys["SeriesInstanceUID"] = first.series_uid
        if not whole_series:
            level = QueryLevel.IMAGE
            keys["SOPInstanceUID"] = [item.sop_uid for item in instances]
        if self.node.retrieve_method is RetrieveMethod.C_GET:
            classes = {uid for item in instances for uid in item.sop_classes}
            return self._get(level, keys, classes)
        return self._move(level, keys)

    def _settle(self, wanted: set[str], arrived: dict[str, ReceiveResult]) -> None:
        """Fill ``arrived`` from the index for instances another receiving process took.

        Every store was answered, so committed, before the node's final response: the first
        look normally finds them all. Polling, quickly at first, covers a node that answers
        before its last stores are done.
        """
        waited = 0.0
        for poll in itertools.count():
            arrived.update(found_in_index(self.intake, self.origin, wanted - arrived.keys()))
            if wanted <= arrived.keys() or waited >= self.policy.settle_timeout:
                return
            if self.node.retrieve_method is RetrieveMethod.C_GET:
                return  # C-GET stores arrive on our own association, before its last response
            delay = _SETTLE_POLLS[min(poll, len(_SETTLE_POLLS) - 1)]
            self.clock.sleep(delay)
            waited += delay

    def _with_own_classes(self, todo: list[ExpectedInstance]) -> list[ExpectedInstance]:
        """Return ``todo`` with each instance's own SOP class added, as the node lists it.

        For a C-GET's retry: a study's ``SOPClassesInStudy`` that left a class out had its
        instances' sub-operations fail for want of a presentation context.
        """
        first, own = todo[0], dict[str, str]()
        for start in range(0, len(todo), _RETRY_BY_UID_LIST):
            keys = {
                "StudyInstanceUID": first.study_uid,
                "SeriesInstanceUID": first.series_uid,
                "SOPInstanceUID": [i.sop_uid for i in todo[start : start + _RETRY_BY_UID_LIST]],
            }
            rows = _optional_find(self.client, QueryLevel.IMAGE, keys, "SOPClassUID")
            if rows is None:
                return todo  # the retry goes on with the classes it has
            own.update({row["SOPInstanceUID"]: row["SOPClassUID"] for row in rows})
        return [
            replace(item, sop_classes=tuple(sorted({*item.sop_classes, own[item.sop_uid]})))
            if is_valid_uid(own.get(item.sop_uid)) and own[item.sop_uid] not in item.sop_classes
            else item
            for item in todo
        ]

    def retrieve_series(
        self, instances: list[ExpectedInstance], ledger: Ledger, whole: bool = True
    ) -> set[str]:
        """Retrieve one series' pending instances, with retries; return the missing UIDs.

        ``whole=False``: ``instances`` are a part of the series (at most
        ``_RETRY_BY_UID_LIST``), always asked for by UID list, never as the series.
        """
        wanted = {item.sop_uid for item in instances}
        todo = list(instances)
        arrived: dict[str, ReceiveResult] = {}
        for attempt in range(self.policy.attempts):
            as_series = whole and (attempt == 0 or len(todo) > _RETRY_BY_UID_LIST)
            try:
                if attempt == 1 and self.node.retrieve_method is RetrieveMethod.C_GET:
                    todo = self._with_own_classes(todo)  # kept by the later retries
                counts, got = self.request(todo, whole_series=as_series)
            except WindowClosedError:
                raise
            except RemoteNodeError as exc:
                level = QueryLevel.SERIES if as_series else QueryLevel.IMAGE
                method = self.node.retrieve_method.value
                counts = RetrieveCounts(method, level.value, error=str(exc))
                got = {}
            ledger.record_request(instances[0].series_uid, counts)
            merged = arrived | {uid: res for uid, res in got.items() if uid in wanted}
            if counts.completed or counts.warning:
                self._settle(wanted, merged)
            ledger.record_receives({uid: merged[uid] for uid in merged.keys() - arrived.keys()})
            arrived = merged
            todo = [item for item in todo if item.sop_uid not in arrived]
            if not todo:
                break
            if attempt + 1 < self.policy.attempts:
                delay = self.policy.backoff * 2**attempt
                series = instances[0].series_uid
                ledger.log(f"series {series}: {len(todo)} missing, retry in {delay:g}s")
                self.clock.sleep(delay)
        return {item.sop_uid for item in todo}


def retrieve_all(
    retriever: Retriever,
    expected: list[ExpectedInstance],
    ledger: Ledger,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Retrieve every pending expected instance, series by series, and reconcile."""
    ledger.expect(item.sop_uid for item in expected)
    pending = set(ledger.pending())
    todo = [item for item in expected if item.sop_uid in pending]
    stored = in_index(retriever.intake, (item.sop_uid for item in todo))
    ledger.record_receives(
        {uid: ReceiveResult(Outcome.ALREADY_STORED, uid, pk) for uid, pk in stored.items()}
    )
    pending -= stored.keys()
    series: dict[str, list[ExpectedInstance]] = {}
    for item in todo:
        if item.sop_uid in pending:
            series.setdefault(item.series_uid, []).append(item)
    parts = split_series(series, retriever.node.max_associations)
    _retrieve_parts_concurrently(retriever, parts, ledger, progress)


@dataclass(frozen=True, slots=True)
class SeriesPart:
    """What one retrieve request asks for: a series' pending instances, or a part of them."""

    series_uid: str
    instances: list[ExpectedInstance]
    whole: bool  # all of the series' pending instances: asked for as the series first


def split_series(
    series: Mapping[str, list[ExpectedInstance]], associations: int
) -> list[SeriesPart]:
    """Return the requests of a retrieve: one per series, split to use spare associations.

    The node sends the instances of one request one after the other, each waiting for our
    answer, so a study of one large series came over one association while the node allowed
    more. While there are fewer requests than ``associations``, the largest one is split in
    two (each part at least ``_PART_AT_LEAST`` instances), asked for by SOP Instance UID list
    (PS3.4 C.4.2.2.1, as a retry asks for missing instances); a part longer than such a list
    may be (``_RETRY_BY_UID_LIST``) is cut into lists that long.
    """
    parts = [SeriesPart(uid, items, True) for uid, items in series.items()]
    while len(parts) < associations:
        largest = max(parts, key=lambda part: len(part.instances), default=None)
        if largest is None or len(largest.instances) < 2 * _PART_AT_LEAST:
            break
        parts.remove(largest)
        half = len(largest.instances) // 2
        for instances in (largest.instances[:half], largest.instances[half:]):
            parts.append(SeriesPart(largest.series_uid, instances, False))
    return [piece for part in parts for piece in _uid_lists(part)]


def _uid_lists(part: SeriesPart) -> list[SeriesPart]:
    if part.whole or len(part.instances) <= _RETRY_BY_UID_LIST:
        return [part]
    size = _RETRY_BY_UID_LIST
    chunks = (part.instances[i : i + size] for i in range(0, len(part.instances), size))
    return [SeriesPart(part.series_uid, chunk, False) for chunk in chunks]


def _retrieve_parts_concurrently(
    retriever: Retriever,
    parts: list[SeriesPart],
    ledger: Ledger,
    progress: Callable[[int], None] | None,
) -> None:
    """Retrieve series (or parts) side by side, as many at once as the node allows associations.

    A closed window (or any unexpected error) stops new requests from starting; the ones in
    flight finish, then the first error is raised.
    """

    def one(part: SeriesPart) -> None:
        missing = retriever.retrieve_series(part.instances, ledger, whole=part.whole)
        for uid in sorted(missing):
            reason = f"not received after {retriever.policy.attempts} attempts"
            ledger.record_missing(uid, reason, {"series_uid": part.series_uid})
        if progress:
            progress(len(part.instances))

    workers = max(1, min(retriever.node.max_associations, len(parts)))
    errors: list[BaseException] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="retrieve") as pool:
        running: set[Future[None]] = set()
        for part in parts:
            if errors or ledger.cancelled():
                break
            if len(running) >= workers:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                errors.extend(e for f in finished if (e := f.exception()) is not None)
                if errors:
                    break
            running.add(pool.submit(one, part))
        for future in running:
            if (error := future.exception()) is not None:
                errors.append(error)
    if errors:
        raise errors[0]
