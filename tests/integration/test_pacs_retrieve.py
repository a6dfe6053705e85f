"""Retrieve from a real Orthanc by C-MOVE (into our receiver) and C-GET, reconciled."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom.association import Association
from sqlalchemy import select

from dicomgate.archive.index import ensure_project
from dicomgate.archive.models import Instance, StagingSession
from dicomgate.dicom import fast_response
from dicomgate.dicom.fast_store import StoreAssembler, StoreRequest
from dicomgate.dicom.query import QueryLevel
from dicomgate.errors import WindowClosedError
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake
from dicomgate.sources.pacs import batch, retrieve
from dicomgate.sources.pacs.batch import Target, retrieve_targets
from dicomgate.sources.pacs.ledger import MemoryLedger
from dicomgate.sources.pacs.retrieve import (
    ExpectedInstance,
    RetrievePolicy,
    list_expected,
    retrieve_all,
)
from dicomgate.sources.pacs.service import PacsService
from dicomgate.sources.scp import Receiver
from dicomgate.sources.scp_processes import ReceiverProcesses
from tests.conftest import _free_port
from tests.fake_clock import FakeClock
from tests.integration.pacs_corpus import CorpusStudy, instance
from tests.integration.pacs_peer import Peer, start_peer

ORIGIN = Origin(OriginKind.PACS, job_id="job-under-test", project="COHORT")


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = start_peer(tmp_path_factory.mktemp("orthanc"))
    yield peer
    peer.orthanc.stop()


@pytest.fixture(autouse=True)
def _cohort(intake: Intake) -> None:
    with intake.db.unit_of_work() as session:
        ensure_project(session, "COHORT")


@pytest.fixture()
def receiver(peer: Peer, intake: Intake, tmp_path: Path) -> Iterator[Receiver]:
    server = Receiver(peer.settings(tmp_path), intake)
    yield server
    server.stop()


def _stored_uids(intake: Intake) -> set[str]:
    with intake.db.reader() as session:
        return set(session.scalars(select(Instance.sop_instance_uid)))


def _retrieve(service: PacsService, study: CorpusStudy) -> MemoryLedger:
    retriever = service.retriever("orthanc", ORIGIN)
    ledger = MemoryLedger()
    expected = list_expected(retriever.client, QueryLevel.STUDY, study.study_uid)
    retrieve_all(retriever, expected, ledger)
    return ledger


@pytest.mark.usefixtures("receiver")
def test_c_move_into_our_receiver(peer: Peer, intake: Intake, tmp_path: Path) -> None:
    study = peer.studies[0]
    ledger = _retrieve(peer.service(intake, tmp_path), study)
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    assert _stored_uids(intake) == set(study.sop_uids)
    assert [c.completed for _, c in ledger.requests] == [3, 3]
    assert all(c.ok and c.method == "c-move" for _, c in ledger.requests)
    with intake.db.reader() as session:
        sources = set(session.scalars(select(StagingSession.source_key)))
    assert sources == {"pacs:job:job-under-test"}  # attributed through Move Originator fields


def test_c_move_stores_taken_by_a_receiver_worker_get_the_jobs_origin(
    peer: Peer, intake: Intake, tmp_path: Path
) -> None:
    processes = ReceiverProcesses(processes=2)
    settings = peer.settings(tmp_path).model_copy(update={"dicom_receiver": processes})
    receiver = Receiver(settings, intake)
    try:
        assert len(receiver.workers) == 1  # a site with a C-MOVE node receives in workers too
        receiver.server.shutdown()  # this process stops accepting: the worker takes them all
        study = peer.studies[0]
        ledger = _retrieve(PacsService(settings, intake), study)
    finally:
        receiver.stop()
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    with intake.db.reader() as session:
        sources = set(session.scalars(select(StagingSession.source_key)))
    assert sources == {"pacs:job:job-under-test"}


def test_c_get_on_our_association(peer: Peer, intake: Intake, tmp_path: Path) -> None:
    study = peer.studies[1]
    ledger = _retrieve(peer.service(intake, tmp_path, retrieve_method="c-get"), study)
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    assert _stored_uids(intake) == set(study.sop_uids)
    assert all(c.ok and c.method == "c-get" for _, c in ledger.requests)


@pytest.mark.parametrize("method", ["c-move", "c-get"])
def test_series_are_split_over_spare_associations(
    peer: Peer, intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # Two series of three, four associations allowed, parts of one instance or more: each
    # series becomes two requests by SOP Instance UID list, which Orthanc answers.
    monkeypatch.setattr(retrieve, "_PART_AT_LEAST", 1)
    study = peer.studies[0]
    service = peer.service(intake, tmp_path, retrieve_method=method, max_associations=4)
    receiver = Receiver(service.settings, intake) if method == "c-move" else None
    try:
        ledger = _retrieve(service, study)
    finally:
        if receiver is not None:
            receiver.stop()
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    assert _stored_uids(intake) == set(study.sop_uids)
    assert sorted((c.level, c.completed) for _, c in ledger.requests) == [
        ("IMAGE", 1),
        ("IMAGE", 1),
        ("IMAGE", 2),
        ("IMAGE", 2),
    ]
    assert all(c.ok and c.method == method for _, c in ledger.requests)
    with intake.db.reader() as session:
        sources = set(session.scalars(select(StagingSession.source_key)))
    assert sources == {"pacs:job:job-under-test"}


@pytest.mark.parametrize(("whole", "levels"), [(True, ["SERIES", "IMAGE"]), (False, ["IMAGE"] * 2)])
def test_a_failed_request_is_recorded_at_the_level_it_asked(
    peer: Peer, intake: Intake, tmp_path: Path, whole: bool, levels: list[str]
) -> None:
    # Nothing listens on the node's port: every request fails as a remote-node error. A series
    # is asked for as the series, then its missing instances by UID list; a part by UID list.
    service = peer.service(intake, tmp_path, retrieve_method="c-get", port=_free_port())
    retriever = service.retriever("orthanc", ORIGIN)
    retriever.policy = RetrievePolicy(attempts=2, backoff=0.0)
    study = peer.studies[0]
    series_uid, sop_uids = next(iter(study.series.items()))
    ct = "1.2.840.10008.5.1.4.1.1.2"
    instances = [ExpectedInstance(uid, (ct,), series_uid, study.study_uid) for uid in sop_uids]
    ledger = MemoryLedger()
    missing = retriever.retrieve_series(instances, ledger, whole=whole)
    assert missing == set(sop_uids)
    assert [counts.level for _, counts in ledger.requests] == levels
    assert all(counts.error and not counts.ok for _, counts in ledger.requests)


def test_c_get_stores_are_taken_from_the_pdus(
    peer: Peer, intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A C-GET's C-STOREs skip pynetdicom's decoding, as the receiver's do (fast_store)."""
    taken: list[str] = []
    slow: list[object] = []
    handler_of = StoreAssembler.__init__

    def counting(self: StoreAssembler, handler: Any, accepted: frozenset[int]) -> None:
        def count(request: StoreRequest) -> tuple[int, str]:
            taken.append(request.sop_instance_uid)
            return handler(request)  # type: ignore[no-any-return]

        handler_of(self, count, accepted)

    monkeypatch.setattr(StoreAssembler, "__init__", counting)
    monkeypatch.setattr(Association, "_c_store_scp", lambda *args: slow.append(args))
    study = peer.studies[3]
    ledger = _retrieve(peer.service(intake, tmp_path, retrieve_method="c-get"), study)
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    assert sorted(taken) == sorted(study.sop_uids)
    assert slow == []


@pytest.mark.parametrize("method", ["c-move", "c-get"])
def test_retrieve_responses_are_decoded_from_the_pdus(
    method: str,
    peer: Peer,
    intake: Intake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The find's and the retrieve's responses skip pynetdicom's decoding (fast_response)."""
    if method == "c-move":
        request.getfixturevalue("receiver")
    decoded: list[int] = []
    decode = fast_response.response_head

    def counting(fragment: memoryview) -> Any:
        head = decode(fragment)
        if head is not None:
            decoded.append(int(head[0].Status))
        return head

    monkeypatch.setattr(fast_response, "response_head", counting)
    study = peer.studies[1]
    ledger = _retrieve(peer.service(intake, tmp_path, retrieve_method=method), study)
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    assert all(c.ok and c.completed for _, c in ledger.requests)
    # The IMAGE-level find: a pending response per instance, a final success (a C-GET first
    # asks for the study's SOP classes: one more). The retrieve: Orthanc answers every
    # sub-operation with a pending response, then a final success.
    instances, requests = len(study.sop_uids), len(ledger.requests)
    finds = 2 if method == "c-get" else 1
    assert decoded.count(0xFF00) >= instances + instances - requests
    assert decoded.count(0x0000) == finds + requests


def _mixed_study(peer: Peer, patient_id: str) -> CorpusStudy:
    """Upload a study of two SOP classes (a CT series and an MR series)."""
    study = CorpusStudy(patient_id, "ECHO^EVA", generate_uid(), "20240301", "A" + patient_id, "CT")
    for modality in ("CT", "MR"):
        study.modality = modality
        series = generate_uid()
        for n in range(2):
            peer.orthanc.upload(instance(study, series, n + 1))
    return study


def test_the_listing_asks_a_c_move_node_for_uids_only(
    peer: Peer, intake: Intake, tmp_path: Path
) -> None:
    study = _mixed_study(peer, "PAT010")
    client = peer.service(intake, tmp_path).retriever("orthanc", ORIGIN).client
    expected = list_expected(client, QueryLevel.STUDY, study.study_uid)
    assert {item.sop_uid for item in expected} == set(study.sop_uids)
    assert {item.sop_classes for item in expected} == {()}  # a C-MOVE proposes no classes
    assert {item.study_uid for item in expected} == {study.study_uid}


@pytest.mark.parametrize("study_classes_answered", [True, False])
def test_c_get_proposes_every_sop_class_of_the_study(
    peer: Peer,
    intake: Intake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    study_classes_answered: bool,
) -> None:
    # The classes come from the study's SOPClassesInStudy; from a node that does not answer
    # it, from each instance's SOPClassUID.
    study = _mixed_study(peer, f"PAT01{int(study_classes_answered) + 1}")
    if not study_classes_answered:
        monkeypatch.setattr(retrieve, "study_sop_classes", lambda client, uid: ())
    service = peer.service(intake, tmp_path, retrieve_method="c-get")
    expected = list_expected(
        service.retriever("orthanc", ORIGIN).client, QueryLevel.STUDY, study.study_uid
    )
    classes = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"}  # CT, MR
    if study_classes_answered:
        assert {item.sop_classes for item in expected} == {tuple(sorted(classes))}
    else:
        assert {c for item in expected for c in item.sop_classes} == classes
        assert all(len(item.sop_classes) == 1 for item in expected)
    ledger = _retrieve(service, study)
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    assert _stored_uids(intake) == set(study.sop_uids)


def test_a_c_get_retry_proposes_the_classes_the_study_list_left_out(
    peer: Peer, intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node whose SOPClassesInStudy names CT only: the MR series' sub-operations fail for want
    # of a context; the retry asks those instances' own SOP class and gets them.
    study = _mixed_study(peer, "PAT013")
    ct = ("1.2.840.10008.5.1.4.1.1.2",)
    monkeypatch.setattr(retrieve, "study_sop_classes", lambda client, uid: ct)
    ledger = _retrieve(peer.service(intake, tmp_path, retrieve_method="c-get"), study)
    assert ledger.counts() == {"stored": len(study.sop_uids)}
    assert _stored_uids(intake) == set(study.sop_uids)
    requests = sorted((c.level, c.completed) for _, c in ledger.requests)
    assert requests == [("IMAGE", 2), ("SERIES", 0), ("SERIES", 2)]


@pytest.mark.usefixtures("receiver")
def test_rerun_skips_what_is_already_retrieved(peer: Peer, intake: Intake, tmp_path: Path) -> None:
    service = peer.service(intake, tmp_path)
    study = peer.studies[2]
    _retrieve(service, study)
    again = _retrieve(service, study)
    assert again.counts() == {"already_stored": len(study.sop_uids)}
    assert again.requests == []  # nothing was asked of the node


@pytest.mark.parametrize("method", ["c-move", "c-get"])
@pytest.mark.usefixtures("receiver")
def test_series_deleted_between_find_and_move_is_missing(
    peer: Peer, intake: Intake, tmp_path: Path, method: str
) -> None:
    study = CorpusStudy("PAT009", "DELTA^DAN", generate_uid(), "20240101", "A9", "CT")
    kept, gone = generate_uid(), generate_uid()
    for series in (kept, gone):
        for n in range(2):
            peer.orthanc.upload(instance(study, series, n + 1))
    service = peer.service(intake, tmp_path, retrieve_method=method)
    retriever = service.retriever("orthanc", ORIGIN)
    expected = list_expected(retriever.client, QueryLevel.STUDY, study.study_uid)
    peer.delete_series(gone)
    ledger = MemoryLedger()
    retrieve_all(retriever, expected, ledger)
    missing = {k for k, (o, _) in ledger.outcomes.items() if o == "missing"}
    assert missing == set(study.series[gone])
    assert _stored_uids(intake) == set(study.series[kept])
    # The failing series was tried series_attempts times, then skipped.
    tries = [s for s, _ in ledger.requests if s == gone]
    assert len(tries) == service.settings.pacs.series_attempts


@pytest.mark.usefixtures("receiver")
def test_waits_outside_the_window_and_continues_inside(
    peer: Peer, intake: Intake, tmp_path: Path
) -> None:
    clock = FakeClock(dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC))
    service = peer.service(intake, tmp_path, clock, windows=[{"start": "20:00", "end": "08:00"}])
    retriever = service.retriever("orthanc", ORIGIN)
    target = Target(QueryLevel.STUDY, peer.studies[3].study_uid)
    with pytest.raises(WindowClosedError):
        retrieve_targets(retriever, [target], MemoryLedger(), wait=False)
    assert _stored_uids(intake) == set()
    ledger = MemoryLedger()
    retrieve_targets(retriever, [target], ledger, wait=True)
    assert clock.slept[0] == 8 * 3600  # waited until 20:00
    assert ledger.counts() == {"stored": len(peer.studies[3].sop_uids)}


def test_unknown_study_is_reported(peer: Peer, intake: Intake, tmp_path: Path) -> None:
    retriever = peer.service(intake, tmp_path).retriever("orthanc", ORIGIN)
    ledger = MemoryLedger()
    retrieve_targets(retriever, [Target(QueryLevel.STUDY, "1.2.3.999")], ledger, wait=False)
    assert ledger.outcomes == {"STUDY:1.2.3.999": ("missing", "the node found no instances for it")}


@pytest.mark.parametrize("method", ["c-move", "c-get"])
def test_a_batch_lists_the_next_study_while_it_retrieves_one(
    peer: Peer, intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    receiver = Receiver(peer.settings(tmp_path), intake) if method == "c-move" else None
    events: list[tuple[str, str, str]] = []  # (what, begin/end, study)
    listed, retrieved = retrieve.list_expected, retrieve.Retriever.request

    def listing(client: Any, level: QueryLevel, uid: str, study_uid: str | None = None) -> Any:
        events.append(("list", "begin", uid))
        return listed(client, level, uid, study_uid)

    def request(
        self: retrieve.Retriever, instances: list[ExpectedInstance], whole_series: bool
    ) -> Any:
        events.append(("retrieve", "begin", instances[0].study_uid))
        try:
            return retrieved(self, instances, whole_series)
        finally:
            events.append(("retrieve", "end", instances[0].study_uid))

    monkeypatch.setattr(batch, "list_expected", listing)
    monkeypatch.setattr(retrieve.Retriever, "request", request)
    service = peer.service(intake, tmp_path, retrieve_method=method, max_associations=4)
    first, second = peer.studies[0], peer.studies[1]
    targets = [Target(QueryLevel.STUDY, study.study_uid) for study in (first, second)]
    ledger = MemoryLedger()
    try:
        retrieve_targets(service.retriever("orthanc", ORIGIN), targets, ledger, wait=False)
    finally:
        if receiver:
            receiver.stop()
    assert ledger.counts() == {"stored": len(first.sop_uids) + len(second.sop_uids)}
    last_of_first = max(
        i for i, e in enumerate(events) if e == ("retrieve", "end", first.study_uid)
    )
    assert events.index(("list", "begin", second.study_uid)) < last_of_first
    assert [e for e in events if e[0] == "list"] == [
        ("list", "begin", first.study_uid),
        ("list", "begin", second.study_uid),
    ]  # each study listed once


def test_a_listing_made_ahead_reports_its_failure_at_its_turn(
    peer: Peer, intake: Intake, tmp_path: Path
) -> None:
    retriever = peer.service(intake, tmp_path, retrieve_method="c-get").retriever("orthanc", ORIGIN)
    known = peer.studies[2]
    targets = [
        Target(QueryLevel.STUDY, known.study_uid),
        Target(QueryLevel.STUDY, "1.2.3.998"),
        Target(QueryLevel.STUDY, peer.studies[3].study_uid),
    ]
    ledger = MemoryLedger()
    retrieve_targets(retriever, targets, ledger, wait=False)
    assert ledger.outcomes.pop("STUDY:1.2.3.998") == (
        "missing",
        "the node found no instances for it",
    )
    assert ledger.counts() == {"stored": len(known.sop_uids) + len(peer.studies[3].sop_uids)}


@pytest.mark.parametrize(("fresh_for", "finds"), [(60.0, 1), (-1.0, 2)])
def test_a_listing_made_ahead_is_used_only_while_fresh(
    peer: Peer,
    intake: Intake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_for: float,
    finds: int,
) -> None:
    calls: list[str] = []
    listed = retrieve.list_expected

    def listing(client: Any, level: QueryLevel, uid: str, study_uid: str | None = None) -> Any:
        calls.append(uid)
        return listed(client, level, uid, study_uid)

    monkeypatch.setattr(batch, "list_expected", listing)
    retriever = peer.service(intake, tmp_path).retriever("orthanc", ORIGIN)
    study = peer.studies[0]
    target = Target(QueryLevel.STUDY, study.study_uid)
    with batch._Listings(retriever, fresh_for=fresh_for) as listings:
        listings.list_ahead(target)
        time.sleep(0.5)  # the listing ahead is done (always stale with a negative fresh_for)
        expected = listings.listed(target)
    assert {item.sop_uid for item in expected} == set(study.sop_uids)
    assert calls == [study.study_uid] * finds
