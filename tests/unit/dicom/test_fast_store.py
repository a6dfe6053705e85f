"""The receiver's C-STORE fast path, fed with PDUs that pynetdicom's own encoder produced."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom import Dataset
from pydicom.filereader import read_dataset
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import P_DATA_TF

from dicomgate.dicom.fast_store import (
    ProtocolError,
    StoreAssembler,
    StoreRequest,
    p_data_pdu,
    split_pdvs,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
DATASET = bytes(range(256)) * 40  # 10 KiB: several fragments with a small PDU


def _store_pdus(
    message_id: int = 5, max_pdu: int = 16382, move: tuple[str, int] | None = None
) -> list[bytes]:
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = CT
    primitive.AffectedSOPInstanceUID = "1.2.3.4.5"
    primitive.Priority = 0
    if move:
        primitive.MoveOriginatorApplicationEntityTitle = move[0]
        primitive.MoveOriginatorMessageID = move[1]
    primitive.DataSet = BytesIO(DATASET)
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return [P_DATA_TF(pdata).encode() for pdata in message.encode_msg(3, max_pdu)]


def _echo_pdu() -> bytes:
    primitive = C_ECHO()
    primitive.MessageID = 9
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    [pdata] = list(message.encode_msg(1, 16382))
    return bytes(P_DATA_TF(pdata).encode())


def _body(pdu: bytes) -> memoryview:
    return memoryview(pdu)[6:]


class _Recorder:
    def __init__(self, status: int = 0x0000, comment: str = "") -> None:
        self.requests: list[StoreRequest] = []
        self.answer = (status, comment)

    def __call__(self, request: StoreRequest) -> tuple[int, str]:
        self.requests.append(request)
        return self.answer


def _decoded_response(context_id: int, command_set: bytes) -> Dataset:
    assert context_id == 3
    return read_dataset(BytesIO(command_set), is_implicit_VR=True, is_little_endian=True)


@pytest.mark.parametrize("max_pdu", [16382, 1024], ids=["one-pdu", "many-fragments"])
def test_a_store_is_assembled_and_answered_once_its_last_fragment_arrived(max_pdu: int) -> None:
    recorder = _Recorder()
    assembler = StoreAssembler(recorder, frozenset({3}))
    *first, last = _store_pdus(max_pdu=max_pdu, move=("PACSAE", 77))
    for pdu in first:
        assert assembler.take(_body(pdu)) == ([], None)
    assert assembler.assembling
    taken = assembler.take(_body(last))
    assert taken is not None
    [(context_id, command_set)], rest = taken
    assert rest is None and not assembler.assembling
    [request] = recorder.requests
    assert request.dataset == DATASET
    assert (request.context_id, request.message_id) == (3, 5)
    assert (request.sop_class_uid, request.sop_instance_uid) == (CT, "1.2.3.4.5")
    assert (request.move_originator_ae, request.move_originator_id) == ("PACSAE", 77)
    response = _decoded_response(context_id, command_set)
    assert response.MessageIDBeingRespondedTo == 5
    assert (response.Status, response.CommandField) == (0x0000, 0x8001)
    assert response.AffectedSOPInstanceUID == "1.2.3.4.5"


def test_a_refusal_carries_its_status_and_comment() -> None:
    assembler = StoreAssembler(_Recorder(0xA700, "no space"), frozenset({3}))
    taken = [assembler.take(_body(pdu)) for pdu in _store_pdus()][-1]
    assert taken is not None
    [(context_id, command_set)] = taken[0]
    response = _decoded_response(context_id, command_set)
    assert (response.Status, response.ErrorComment) == (0xA700, "no space")


def test_other_messages_are_left_to_pynetdicom() -> None:
    recorder = _Recorder()
    assembler = StoreAssembler(recorder, frozenset({1, 3}))
    assert assembler.take(_body(_echo_pdu())) is None
    # A C-STORE on a context that was not accepted is pynetdicom's to refuse.
    assert StoreAssembler(recorder, frozenset({1})).take(_body(_store_pdus()[0])) is None
    assert assembler.take(memoryview(b"\x00\x00")) is None  # broken: pynetdicom reports it
    assert recorder.requests == []


def test_a_message_after_a_completed_store_in_the_same_pdu_goes_back() -> None:
    pdus = _store_pdus()
    pdvs = b"".join(bytes(_body(pdu)) for pdu in pdus) + bytes(_body(_echo_pdu()))
    recorder = _Recorder()
    taken = StoreAssembler(recorder, frozenset({1, 3})).take(memoryview(pdvs))
    assert taken is not None
    responses, rest = taken
    assert len(responses) == 1 and len(recorder.requests) == 1
    assert rest is not None and bytes(rest) == bytes(_body(_echo_pdu()))


def test_a_command_in_the_middle_of_a_dataset_is_a_protocol_error() -> None:
    assembler = StoreAssembler(_Recorder(), frozenset({3}))
    first, *_ = _store_pdus(max_pdu=1024)
    assembler.take(_body(first))
    with pytest.raises(ProtocolError, match="before the last dataset fragment"):
        assembler.take(_body(_store_pdus()[0]))
    assembler.reset()
    assert not assembler.assembling


def test_a_pdv_longer_than_its_pdu_is_a_protocol_error_while_assembling() -> None:
    assembler = StoreAssembler(_Recorder(), frozenset({3}))
    assembler.take(_body(_store_pdus(max_pdu=1024)[0]))
    broken = struct.pack(">LBB", 5000, 3, 0x00) + b"short"
    with pytest.raises(ProtocolError, match="does not fit"):
        assembler.take(memoryview(broken))


def test_split_and_encode_round_trip() -> None:
    pdu = p_data_pdu(7, b"\x01\x02\x03\x04")
    assert pdu[:2] == b"\x04\x00" and struct.unpack(">L", pdu[2:6])[0] == len(pdu) - 6
    [(context_id, control, fragment, offset)] = split_pdvs(memoryview(pdu)[6:])
    assert (context_id, control, bytes(fragment), offset) == (7, 0x03, b"\x01\x02\x03\x04", 0)


def test_a_failing_handler_is_answered_with_pynetdicoms_status_and_assembling_goes_on() -> None:
    def broken(request: StoreRequest) -> tuple[int, str]:
        raise RuntimeError("boom")

    assembler = StoreAssembler(broken, frozenset({3}))
    taken = [assembler.take(_body(pdu)) for pdu in _store_pdus()][-1]
    assert taken is not None
    [(context_id, command_set)] = taken[0]
    assert _decoded_response(context_id, command_set).Status == 0xC211
    assert not assembler.assembling
