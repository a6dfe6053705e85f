"""The receiver's event-driven reactors (pynetdicom's timers and protocol) and C-STORE fast path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from dicomgate.archive.models import Instance
from dicomgate.dicom import reactor as reactor_module
from dicomgate.dicom.reactor import EventDrivenAssociation, EventDrivenDUL
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES


@pytest.fixture()
def receiver(intake: Intake) -> Iterator[Receiver]:
    # One process, so the association we inspect is served here; a short network timeout.
    settings = load_settings(
        dicom_port=0,
        ae_title="DGTEST",
        dicom_network_timeout=0.5,
        dicom_receiver={"processes": 1},
    )
    server = Receiver(settings, intake)
    yield server
    server.stop()


def _scu() -> AE:
    ae = AE(ae_title="REACTOR")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    return ae


def test_plain_listener_serves_with_event_driven_reactors(receiver: Receiver) -> None:
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST")
    assert assoc.is_established
    try:
        [served] = receiver.ae.active_associations
        assert isinstance(served, EventDrivenAssociation)
        # Several request/response exchanges on one association, then an orderly release.
        for _ in range(3):
            assert assoc.send_c_echo().Status == 0x0000
        ds = dcmread(PYDICOM_FILES / "CT_small.dcm")
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert assoc.is_released


def test_after_response_actions_run_and_a_failing_one_does_not_end_the_association(
    receiver: Receiver,
) -> None:
    ran: list[int] = []

    def fail() -> None:
        raise RuntimeError("an action that fails")

    def on_echo(event: Any) -> int:
        event.assoc.after_response(fail)
        event.assoc.after_response(lambda: ran.append(len(ran)))
        return 0x0000

    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST")
    try:
        [served] = receiver.ae.active_associations
        served.unbind(evt.EVT_C_ECHO, served.get_handlers(evt.EVT_C_ECHO)[0])
        served.bind(evt.EVT_C_ECHO, on_echo)
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
        deadline = time.monotonic() + 5
        while len(ran) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        assoc.release()
    assert ran == [0, 1]
    assert assoc.is_released


def test_idle_association_is_aborted_at_the_network_timeout(receiver: Receiver) -> None:
    aborted: list[Any] = []
    handlers: list[Any] = [(evt.EVT_ABORTED, aborted.append)]
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST", evt_handlers=handlers)
    assert assoc.is_established
    deadline = time.monotonic() + 20  # generous: the timeout is 0.5 s, the reactor ticks 50 ms
    while (assoc.is_established or receiver.ae.active_associations) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not assoc.is_established
    assert assoc.is_aborted and len(aborted) == 1
    assert receiver.ae.active_associations == []


def _store_pdus(ds: Dataset, context_id: int, max_pdu: int) -> list[bytes]:
    """Encode a C-STORE-RQ of ``ds`` as P-DATA-TF PDUs, with pynetdicom's own encoder."""
    primitive = C_STORE()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = ds.SOPClassUID
    primitive.AffectedSOPInstanceUID = ds.SOPInstanceUID
    primitive.Priority = 0
    encoded = encode(ds, False, True)  # explicit VR little endian
    assert encoded is not None
    primitive.DataSet = BytesIO(encoded)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return [P_DATA_TF(pdata).encode() for pdata in message.encode_msg(context_id, max_pdu)]


def _ct_context(assoc: Any) -> int:
    [context] = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == CTImageStorage]
    return int(context.context_id)


def _send_raw(assoc: Any, pdu: bytes) -> None:
    """Write a PDU on the association's socket, past its state machine."""
    assoc.dul.socket.send(pdu)


def _stored(intake: Intake) -> list[str]:
    with intake.db.reader() as session:
        return list(session.scalars(select(Instance.sop_instance_uid)))


def test_stores_are_taken_from_the_pdus_in_many_fragments(
    receiver: Receiver, intake: Intake
) -> None:
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST", max_pdu=4096)
    assert assoc.is_established
    try:
        [served] = receiver.ae.active_associations
        assert isinstance(served.dul, EventDrivenDUL)
        deadline = time.monotonic() + 10
        while not served.dul.takes_stores and time.monotonic() < deadline:
            time.sleep(0.01)  # installed when the association is established
        assert served.dul.takes_stores
        ds = dcmread(PYDICOM_FILES / "CT_small.dcm")  # ~39 KB: about ten fragments
        assert assoc.send_c_echo().Status == 0x0000  # pynetdicom's, between the stores
        assert assoc.send_c_store(ds).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    [row_uid] = _stored(intake)
    assert row_uid == ds.SOPInstanceUID
    with intake.db.reader() as session:
        key = session.scalars(select(Instance.blob_key)).one()
    stored = dcmread(BytesIO(intake.blobs.read(key)))
    assert stored.PixelData == ds.PixelData


def test_an_abort_in_the_middle_of_a_store_stores_nothing_and_serving_goes_on(
    receiver: Receiver, intake: Intake
) -> None:
    ds = dcmread(PYDICOM_FILES / "CT_small.dcm")
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST")
    assert assoc.is_established
    first, *_rest = _store_pdus(ds, _ct_context(assoc), 4096)
    _send_raw(assoc, first)
    assoc.abort()
    again = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST")
    try:
        ds.SOPInstanceUID = generate_uid()
        assert again.send_c_store(ds).Status == 0x0000
    finally:
        again.release()
    assert _stored(intake) == [ds.SOPInstanceUID]


def test_a_command_inside_a_dataset_aborts_the_association(
    receiver: Receiver, intake: Intake
) -> None:
    ds = dcmread(PYDICOM_FILES / "CT_small.dcm")
    aborted: list[Any] = []
    handlers: list[Any] = [(evt.EVT_ABORTED, aborted.append)]
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST", evt_handlers=handlers)
    assert assoc.is_established
    first, *_rest = _store_pdus(ds, _ct_context(assoc), 4096)
    _send_raw(assoc, first)
    _send_raw(assoc, _store_pdus(ds, _ct_context(assoc), 16382)[0])  # a new command
    deadline = time.monotonic() + 10
    while not aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert aborted and assoc.is_aborted
    assert _stored(intake) == []


def test_every_pdu_the_fast_path_reads_rearms_quick_ack(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sender with Nagle on waits for our ACK before its next small segment; Linux delays
    # that ACK unless quick-ACK mode is re-armed after each read (dcmtk's default: 11/s).
    if not reactor_module._TCP_QUICKACK:
        pytest.skip("TCP_QUICKACK is Linux only")
    rearmed: list[int] = []
    monkeypatch.setattr(reactor_module, "_quick_ack", lambda raw: rearmed.append(raw.fileno()))
    read = reactor_module.recv_exactly
    reads: list[int] = []

    def counting(*args: Any) -> bytearray | None:
        reads.append(1)
        return read(*args)

    monkeypatch.setattr(reactor_module, "recv_exactly", counting)
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST")
    try:
        ds = dcmread(PYDICOM_FILES / "CT_small.dcm")
        for _ in range(3):
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert len(reads) >= 6  # a head and a body per C-STORE PDU at least
    assert len(rearmed) >= len(reads)
