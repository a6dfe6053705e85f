"""Responses decoded from their PDUs (``dicom.fast_response``) as pynetdicom decodes them."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP, C_GET_RSP, C_MOVE_RSP, DIMSEMessage
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF

from dicomgate.dicom.fast_response import ResponseAssembler, Taken
from dicomgate.dicom.fast_store import ProtocolError


def retrieve_response(body: memoryview) -> tuple[int, C_GET | C_MOVE | C_FIND] | None:
    """Return the one response a PDU holds whole, else None (declined or more to come)."""
    assembler = ResponseAssembler()
    taken = assembler.take(body)
    if taken is None or taken[1] is not None or len(taken[0]) != 1 or assembler.assembling:
        return None
    return taken[0][0]


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


def _pynetdicom_decodes_all(bodies: list[bytes]) -> C_GET | C_MOVE | C_FIND:
    message = DIMSEMessage()
    for body in bodies:
        pdu = P_DATA_TF()
        pdu.decode(struct.pack(">BBL", 4, 0, len(body)) + body)
        if message.decode_msg(pdu.to_primitive()):
            return message.message_to_primitive()  # type: ignore[return-value]
    raise AssertionError("pynetdicom found no complete message")


def _identifier(**values: object) -> BytesIO:
    identifier = Dataset()
    for keyword, value in values.items():
        setattr(identifier, keyword, value)
    encoded = encode(identifier, True, True)
    assert encoded is not None
    return BytesIO(encoded)


def _assemble(bodies: list[bytes]) -> list[tuple[int, C_GET | C_MOVE | C_FIND]]:
    assembler = ResponseAssembler()
    done: list[tuple[int, C_GET | C_MOVE | C_FIND]] = []
    for body in bodies:
        taken = assembler.take(memoryview(body))
        assert taken is not None and taken[1] is None
        done.extend(taken[0])
    assert not assembler.assembling
    return done


def _same_identifier(ours: C_GET | C_MOVE | C_FIND, theirs: C_GET | C_MOVE | C_FIND) -> None:
    assert ours.Identifier is not None and theirs.Identifier is not None
    assert ours.Identifier.getvalue() == theirs.Identifier.getvalue()


@pytest.mark.parametrize("one_pdu", [False, True])
def test_a_failure_with_its_failed_list_is_assembled_as_pynetdicom_does(one_pdu: bool) -> None:
    primitive = _primitive(C_GET, 0xA702, NumberOfFailedSuboperations=1)
    primitive.Identifier = _identifier(FailedSOPInstanceUIDList=["1.2.3.4", "1.2.3.5"])
    bodies = _bodies(primitive)
    assert len(bodies) == 2  # pynetdicom sends the command and the identifier apart
    if one_pdu:
        bodies = [b"".join(bodies)]
    [(context_id, ours)] = _assemble(bodies)
    theirs = _pynetdicom_decodes_all(bodies)
    assert context_id == 3
    for name in _FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    _same_identifier(ours, theirs)


def test_find_responses_are_taken_with_their_identifiers() -> None:
    bodies: list[bytes] = []
    for index in range(3):
        pending = C_FIND()
        pending.MessageIDBeingRespondedTo, pending.Status = 9, 0xFF00
        pending.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
        pending.Identifier = _identifier(PatientName=f"Doe^{index}", StudyInstanceUID="1.2.3")
        bodies.extend(_bodies(pending, context_id=1))
    final = C_FIND()
    final.MessageIDBeingRespondedTo, final.Status = 9, 0x0000
    bodies.extend(_bodies(final, context_id=1))
    done = _assemble(bodies)
    assert [(cx, p.Status) for cx, p in done] == [(1, 0xFF00)] * 3 + [(1, 0x0000)]
    theirs = _pynetdicom_decodes_all(bodies[:2])
    assert (
        type(done[0][1]) is C_FIND and done[0][1].AffectedSOPClassUID == theirs.AffectedSOPClassUID
    )
    _same_identifier(done[0][1], theirs)
    assert done[3][1].Identifier is None and done[3][1].is_valid_response


def test_other_fields_or_messages_are_left_to_pynetdicom() -> None:
    with_comment = _primitive(C_MOVE, 0xC000, ErrorComment="unable to process")
    [body] = _bodies(with_comment)
    assert ResponseAssembler().take(memoryview(body)) is None
    counts_in_a_find = _command_pdv([*_PENDING[1:], (0x0100, b"\x20\x80"), (0x1020, b"\x01\x00")])
    assert ResponseAssembler().take(memoryview(counts_in_a_find)) is None
    request = _command_pdv([(0x0100, b"\x10\x00"), (0x0110, b"\x01\x00"), (0x0800, b"\x01\x01")])
    assert ResponseAssembler().take(memoryview(request)) is None  # a C-GET request


def test_what_follows_a_response_in_the_same_pdu_is_handed_back() -> None:
    store_command = _command_pdv([(0x0100, b"\x01\x00"), (0x0110, b"\x02\x00")])
    body = memoryview(_command_pdv(_PENDING) + store_command)
    taken: Taken | None = ResponseAssembler().take(body)
    assert taken is not None
    done, rest = taken
    assert [p.Status for _, p in done] == [0xFF00]
    assert rest is not None and bytes(rest) == store_command


def test_a_command_before_the_last_identifier_fragment_is_a_protocol_error() -> None:
    pending = C_FIND()
    pending.MessageIDBeingRespondedTo, pending.Status = 9, 0xFF00
    pending.Identifier = _identifier(PatientID="A")
    command, _ = _bodies(pending)
    for broken in (command, _command_pdv(_PENDING, control=0x00)[:-2] + b"\x00\x00", b"\x00"):
        assembler = ResponseAssembler()
        assert assembler.take(memoryview(command)) == ([], None)
        assert assembler.assembling
        with pytest.raises(ProtocolError):
            assembler.take(memoryview(broken))
        assembler.reset()
        assert not assembler.assembling


def test_an_identifier_on_another_context_is_a_protocol_error() -> None:
    pending = C_FIND()
    pending.MessageIDBeingRespondedTo, pending.Status = 9, 0xFF00
    pending.Identifier = _identifier(PatientID="A")
    command, dataset = _bodies(pending, context_id=1)
    assembler = ResponseAssembler()
    assembler.take(memoryview(command))
    moved = bytearray(dataset)
    moved[4] = 3  # the PDV's presentation context id
    with pytest.raises(ProtocolError):
        assembler.take(memoryview(bytes(moved)))


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
