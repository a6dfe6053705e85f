"""C-FIND, C-GET and C-MOVE responses decoded straight from the P-DATA PDUs of our requests.

A find of N matches brings N pending responses, and a retrieve of N instances N pending
responses, one after each sub-operation. For each, pynetdicom decodes the PDU into objects,
runs its state machine, reassembles the message in its DIMSE provider, decodes the command set
with pydicom and copies it field by field into a primitive: about a seventh of the Python time
of a C-GET and half of a large C-FIND's. A response whose command set holds only the usual
fields is decoded here into the same primitive pynetdicom would have queued, its identifier
(if any) as the same bytes. Anything else (other fields, a command split over PDVs, a message
that is not a response to our request) is left to pynetdicom, exactly as it arrived.
"""

from __future__ import annotations

from io import BytesIO

from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE

from dicomgate.dicom.fast_store import MessageAssembler, ProtocolError, decode_command

Response = C_FIND | C_GET | C_MOVE

_NO_DATA_SET = (0x0101).to_bytes(2, "little")
_KINDS: dict[int, type[Response]] = {0x8020: C_FIND, 0x8010: C_GET, 0x8021: C_MOVE}
_US_FIELDS = {
    0x0120: "MessageIDBeingRespondedTo",
    0x0900: "Status",
    0x1020: "NumberOfRemainingSuboperations",
    0x1021: "NumberOfCompletedSuboperations",
    0x1022: "NumberOfFailedSuboperations",
    0x1023: "NumberOfWarningSuboperations",
}
_KNOWN = {0x0000, 0x0002, 0x0100, 0x0800, *_US_FIELDS}  # 0x0000: the group length


def response_head(fragment: memoryview) -> tuple[Response, bool] | None:
    """Return the primitive of a response command set and whether a dataset follows, or None."""
    try:
        elements = decode_command(fragment)
    except ProtocolError:
        return None
    if not elements.keys() <= _KNOWN or any(
        len(elements[tag]) != 2 for tag in (0x0100, 0x0800, *_US_FIELDS) if tag in elements
    ):
        return None
    kind = _KINDS.get(_ushort(elements[0x0100]) if 0x0100 in elements else -1)
    if kind is None or 0x0800 not in elements or 0x0120 not in elements or 0x0900 not in elements:
        return None  # pynetdicom reports what is missing
    primitive = kind()
    for tag, name in _US_FIELDS.items():
        if tag in elements:
            if not hasattr(primitive, name):
                return None  # e.g. sub-operation counts in a C-FIND response
            setattr(primitive, name, _ushort(elements[tag]))
    if 0x0002 in elements:
        try:
            primitive.AffectedSOPClassUID = elements[0x0002].decode("ascii").rstrip("\0 ")
        except (UnicodeDecodeError, ValueError, TypeError):
            return None
    return primitive, elements[0x0800] != _NO_DATA_SET


def _ushort(value: bytes) -> int:
    return int.from_bytes(value, "little")


Taken = tuple[list[tuple[int, Response]], memoryview | None]


class ResponseAssembler(MessageAssembler[Response, Response]):
    """Collects the responses to one requesting association's finds, gets and moves.

    Its output per response is the primitive, with the identifier (if any) as its bytes.
    """

    def _start(self, context_id: int, command_set: memoryview) -> tuple[Response, bool] | None:
        started = response_head(command_set)
        if started is not None:
            started[0]._context_id = context_id  # as pynetdicom sets it
        return started

    def _complete(self, context_id: int, head: Response, dataset: bytes | None) -> Response:
        if dataset is not None:
            head.Identifier = BytesIO(dataset)
        return head
