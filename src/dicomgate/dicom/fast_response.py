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

from dataclasses import dataclass, field
from io import BytesIO

from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE

from dicomgate.dicom.fast_store import ProtocolError, decode_command, split_pdvs

Response = C_FIND | C_GET | C_MOVE

_NO_DATA_SET = (0x0101).to_bytes(2, "little")
_COMMAND, _LAST = 0x01, 0x02  # message control header bits (PS3.8 E.2)
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


@dataclass
class ResponseAssembler:
    """Collects the responses to one requesting association's finds, gets and moves."""

    _head: tuple[int, Response] | None = None
    _fragments: list[memoryview] = field(default_factory=list)

    @property
    def assembling(self) -> bool:
        """Return True while a response's identifier is still arriving."""
        return self._head is not None

    def reset(self) -> None:
        """Forget a response cut short (the association is aborted or released)."""
        self._head, self._fragments = None, []

    def take(self, body: memoryview) -> Taken | None:
        """Take one P-DATA-TF body, or decline it (None) for pynetdicom.

        Returns the complete responses as (context id, primitive) and, when something this
        does not decode follows them in the same PDU, the PDV items from there on (for
        pynetdicom). Declining is only possible while no response is being assembled.

        Raises
        ------
        ProtocolError
            When the PDU breaks the message rules while an identifier is being assembled.
        """
        try:
            items = split_pdvs(body)
        except ProtocolError:
            if self.assembling:
                raise
            return None
        done: list[tuple[int, Response]] = []
        for context_id, control, fragment, offset in items:
            if self._head is None:
                started = self._start(control, fragment)
                if started is None:
                    return (done, body[offset:]) if offset else None
                started[0]._context_id = context_id  # as pynetdicom sets it
                if started[1]:
                    self._head = (context_id, started[0])
                else:
                    done.append((context_id, started[0]))
                continue
            if control & _COMMAND or context_id != self._head[0]:
                raise ProtocolError("a command arrived before the last identifier fragment")
            self._fragments.append(fragment)
            if control & _LAST:
                done.append(self._finish())
        return done, None

    @staticmethod
    def _start(control: int, fragment: memoryview) -> tuple[Response, bool] | None:
        if control & (_COMMAND | _LAST) != _COMMAND | _LAST:
            return None
        return response_head(fragment)

    def _finish(self) -> tuple[int, Response]:
        assert self._head is not None  # only called while assembling
        context_id, primitive = self._head
        primitive.Identifier = BytesIO(b"".join(self._fragments))
        self.reset()
        return context_id, primitive
