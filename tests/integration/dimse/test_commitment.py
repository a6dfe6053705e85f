"""Storage Commitment Push Model SCP, with pynetdicom as the requesting SCU (dcmtk has none)."""

from __future__ import annotations

import queue
import time
from typing import Any

import pydicom
import pytest
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from dicomgate.access.dimse.commitment import Committer
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.sources.scp import Receiver
from tests.conftest import _free_port
from tests.integration.dimse.conftest import AE_TITLE, serve
from tests.integration.dimse.corpus import Corpus

INSTANCE = "1.2.840.10008.1.20.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture()
def database(sqlite_database: Database) -> Database:
    """SQLite only here (see ``sqlite_database``)."""
    return sqlite_database


def _request(refs: list[tuple[str, str]], transaction: str | None = None) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.TransactionUID = transaction or generate_uid()
    items = []
    for cls, uid in refs:
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, uid
        items.append(item)
    ds.ReferencedSOPSequence = Sequence(items)
    return ds


def _reports() -> tuple[queue.Queue[tuple[int, pydicom.Dataset]], Any]:
    reports: queue.Queue[tuple[int, pydicom.Dataset]] = queue.Queue()

    def on_report(event: Any) -> tuple[int, None]:
        reports.put((int(event.event_type), event.event_information))
        return 0x0000, None

    return reports, on_report


def _uids(info: pydicom.Dataset, keyword: str) -> dict[str, int | None]:
    return {
        str(item.ReferencedSOPInstanceUID): item.get("FailureReason")
        for item in info.get(keyword, [])
    }


# The report handler runs in its own pynetdicom thread and answers after it returned: when the
# test has released meanwhile, that answer meets a released association (Evt9 in Sta7) in the
# SCU's reactor thread. The report and its checks are unaffected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_report_on_the_same_association_lists_committed_and_failed(
    qr_scp: Receiver, corpus: Corpus
) -> None:
    stored = corpus.instances[corpus.series[corpus.studies[0]][0]]
    unknown = generate_uid()
    transaction = generate_uid()
    request = _request(
        [(CT, stored[0]), (CT, stored[1]), (CT, unknown), (MR, stored[2])], transaction
    )
    reports, on_report = _reports()
    ae = AE(ae_title="COMMITSCU")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1",
        qr_scp.port,
        ae_title=AE_TITLE,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
    )
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, INSTANCE)
        assert status.Status == 0x0000
        event_type, info = reports.get(timeout=30)
    finally:
        assoc.release()
    assert event_type == 2  # some failed
    assert info.TransactionUID == transaction
    assert _uids(info, "ReferencedSOPSequence") == {stored[0]: None, stored[1]: None}
    assert _uids(info, "FailedSOPSequence") == {unknown: 0x0112, stored[2]: 0x0119}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_report_waits_for_a_slow_n_action_response(
    intake: Intake, corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report once raced our N-ACTION response; its command PDU could land first."""
    answer = Committer.on_action

    def slow_answer(self: Committer, event: Any) -> tuple[Any, Any]:
        result = answer(self, event)
        time.sleep(0.5)  # the report is ready long before the response goes out
        return result

    monkeypatch.setattr(Committer, "on_action", slow_answer)
    scp = serve(intake)
    uid = corpus.instances[corpus.series[corpus.studies[1]][0]][0]
    reports, on_report = _reports()
    arrived: list[str] = []
    ae = AE(ae_title="COMMITSCU")
    ae.add_requested_context(StorageCommitmentPushModel)
    try:
        assoc = ae.associate(
            "127.0.0.1",
            scp.port,
            ae_title=AE_TITLE,
            evt_handlers=[
                (evt.EVT_N_EVENT_REPORT, on_report),
                (evt.EVT_DIMSE_RECV, lambda event: arrived.append(type(event.message).__name__)),
            ],
        )
        status, _ = assoc.send_n_action(
            _request([(CT, uid)]), 1, StorageCommitmentPushModel, INSTANCE
        )
        assert status.Status == 0x0000
        event_type, info = reports.get(timeout=30)
        assoc.release()
    finally:
        scp.stop()
    assert arrived == ["N_ACTION_RSP", "N_EVENT_REPORT_RQ"]
    assert event_type == 1
    assert _uids(info, "ReferencedSOPSequence") == {uid: None}


# pynetdicom's reactor thread of the released association may still see a late event and raise
# InvalidEventError (Evt9 in Sta7) in its own thread; the report and its checks are unaffected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_report_over_a_new_association_after_release(intake: Intake, corpus: Corpus) -> None:
    reports, on_report = _reports()
    listener_port = _free_port()
    listener = AE(ae_title="COMMITSCU")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    server = listener.start_server(
        ("127.0.0.1", listener_port),
        block=False,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
    )
    destination = {"ae_title": "COMMITSCU", "host": "127.0.0.1", "port": listener_port}
    scp = serve(intake, destinations=[destination], commitment_report_timeout=2.0)
    try:
        uid = corpus.instances[corpus.series[corpus.studies[2]][0]][0]
        ae = AE(ae_title="COMMITSCU")
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title=AE_TITLE)
        status, _ = assoc.send_n_action(
            _request([(CT, uid)]), 1, StorageCommitmentPushModel, INSTANCE
        )
        assoc.release()  # before the report: it must come over a new association
        assert status.Status == 0x0000
        event_type, info = reports.get(timeout=30)
    finally:
        scp.stop()
        server.shutdown()
    assert event_type == 1
    assert _uids(info, "ReferencedSOPSequence") == {uid: None}
    assert "FailedSOPSequence" not in info


@pytest.mark.parametrize(
    ("action", "instance", "request_ds", "expected"),
    [
        (2, INSTANCE, "valid", 0x0123),  # no such action
        (1, "1.2.3.4", "valid", 0x0117),  # not the well-known instance
        (1, INSTANCE, "no-transaction", 0x0120),
        (1, INSTANCE, "no-references", 0x0120),
    ],
)
def test_malformed_requests_refused(
    qr_scp: Receiver, corpus: Corpus, action: int, instance: str, request_ds: str, expected: int
) -> None:
    request = _request([(CT, corpus.instances[corpus.series[corpus.studies[1]][0]][0])])
    if request_ds == "no-transaction":
        del request.TransactionUID
    if request_ds == "no-references":
        request.ReferencedSOPSequence = Sequence([])
    ae = AE(ae_title="COMMITSCU")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", qr_scp.port, ae_title=AE_TITLE)
    try:
        status, _ = assoc.send_n_action(request, action, StorageCommitmentPushModel, instance)
    finally:
        assoc.release()
    assert status.Status == expected
