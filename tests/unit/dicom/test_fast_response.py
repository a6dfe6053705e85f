"""C-GET and C-MOVE responses decoded from their PDU (``dicom.fast_response``), as pynetdicom."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP, C_GET_RSP, C_MOVE_RSP, DIMSEMessage
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF

from dicomgate.dicom.fast_response import retrieve_response

_COUNTS = (
    "NumberOfRemainingSuboperations",
    "NumberOfCompletedSuboperations",
    "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations",
)
_FIELDS = ("MessageIDBeingRespondedTo", "AffectedSOPClassUID", "Status", *_COUNTS)
_GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"


def _primitive(kind: type[C_GET] | type[C_MOVE], status: int, **fields: object) -> C_GET | C_MOVE:
    primitive = kind()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = _GET_MODEL
    primitive.Status = status
    for name, value in fields.items():
        setattr(primitive, name, value)
    return primitive


def _bodies(primitive: C_GET | C_MOVE | C_FIND, context_id: int = 3) -> list[bytes]:
    message: DIMSEMessage = {C_GET: C_GET_RSP, C_MOVE: C_MOVE_RSP, C_FIND: C_FIND_RSP}[
        type(primitive)
    ]()
    message.primitive_to_message(primitive)
    return [P_DATA_TF(pdv).encode()[6:] for pdv in message.encode_msg(context_id, 0)]


def _pynetdicom_decodes(body: bytes) -> C_GET | C_MOVE:
    message = DIMSEMessage()
    pdu = P_DATA_TF()
    pdu.decode(struct.pack(">BBL", 4, 0, len(body)) + body)
    assert message.decode_msg(pdu.to_primitive())
    return message.message_to_primitive()  # type: ignore[return-value]


@pytest.mark.parametrize("kind", [C_GET, C_MOVE])
@pytest.mark.parametrize(
    ("status", "counts"),
    [
        (0xFF00, (999, 1, 0, 0)),  # pending, after the first sub-operation
        (0x0000, (None, 1000, 0, 0)),  # final success, nothing remaining
        (0xFF00, (0, 0, 0, 0)),
        (0xB000, (None, 998, 0, 2)),  # warnings but no failed list
    ],
)
def test_decodes_what_pynetdicom_decodes(
    kind: type[C_GET] | type[C_MOVE], status: int, counts: tuple[int | None, ...]
) -> None:
    fields = {name: value for name, value in zip(_COUNTS, counts, strict=True) if value is not None}
    [body] = _bodies(_primitive(kind, status, **fields))
    decoded = retrieve_response(memoryview(body))
    assert decoded is not None
    context_id, ours = decoded
    theirs = _pynetdicom_decodes(body)
    assert context_id == 3
    assert type(ours) is type(theirs) is kind
    for name in _FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.is_valid_response
    assert ours.Identifier is None


def test_a_response_without_a_sop_class_is_taken() -> None:
    primitive = _primitive(C_GET, 0xFF00, NumberOfRemainingSuboperations=3)
    primitive.AffectedSOPClassUID = None
    [body] = _bodies(primitive)
    decoded = retrieve_response(memoryview(body))
    assert decoded is not None and decoded[1].AffectedSOPClassUID is None


def test_a_response_with_a_dataset_is_left_to_pynetdicom() -> None:
    identifier = Dataset()
    identifier.FailedSOPInstanceUIDList = ["1.2.3.4"]
    primitive = _primitive(C_GET, 0xA702, NumberOfFailedSuboperations=1)
    encoded = encode(identifier, True, True)
    assert encoded is not None
    primitive.Identifier = BytesIO(encoded)
    bodies = _bodies(primitive)
    assert all(retrieve_response(memoryview(body)) is None for body in bodies)
    assert retrieve_response(memoryview(b"".join(bodies))) is None  # command and dataset


def test_other_fields_or_messages_are_left_to_pynetdicom() -> None:
    with_comment = _primitive(C_MOVE, 0xC000, ErrorComment="unable to process")
    [body] = _bodies(with_comment)
    assert retrieve_response(memoryview(body)) is None
    find = C_FIND()
    find.MessageIDBeingRespondedTo, find.Status = 7, 0x0000
    [body] = _bodies(find)
    assert retrieve_response(memoryview(body)) is None


def _command_pdv(elements: list[tuple[int, bytes]], control: int = 0x03) -> bytes:
    command = b"".join(struct.pack("<HHI", 0, tag, len(value)) + value for tag, value in elements)
    return struct.pack(">LBB", len(command) + 2, 1, control) + command


_PENDING = [
    (0x0100, b"\x10\x80"),
    (0x0120, b"\x07\x00"),
    (0x0800, b"\x01\x01"),
    (0x0900, b"\x00\xff"),
]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00",  # a PDV header cut short
        _command_pdv(_PENDING)[:-1],  # the last element cut short
        _command_pdv(_PENDING, control=0x01),  # not the last command fragment
        _command_pdv(_PENDING, control=0x02),  # a dataset fragment
        _command_pdv(_PENDING) * 2,  # two messages in one PDU
        _command_pdv([*_PENDING[:3], (0x0900, b"\x00")]),  # a status of one byte
        _command_pdv(_PENDING[1:]),  # no command field
        _command_pdv([_PENDING[0], *_PENDING[2:]]),  # no message id responded to
        _command_pdv(_PENDING[:3]),  # no status
        _command_pdv([*_PENDING[:2], (0x0800, b"\x02\x00"), _PENDING[3]]),  # a dataset follows
        _command_pdv([*_PENDING, (0x0002, b"\xff\xfe")]),  # a SOP class that is not text
    ],
)
def test_malformed_or_unusual_pdus_are_left_to_pynetdicom(body: bytes) -> None:
    assert retrieve_response(memoryview(body)) is None


def test_the_hand_built_pending_response_is_taken() -> None:
    decoded = retrieve_response(memoryview(_command_pdv(_PENDING)))
    assert decoded is not None
    assert decoded[1].Status == 0xFF00 and decoded[1].MessageIDBeingRespondedTo == 7


def test_a_non_conformant_sop_class_is_kept_as_pynetdicom_keeps_it() -> None:
    body = _command_pdv([*_PENDING, (0x0002, b"not a uid\0")])
    decoded = retrieve_response(memoryview(body))
    assert decoded is not None
    assert decoded[1].AffectedSOPClassUID == _pynetdicom_decodes(body).AffectedSOPClassUID
