"""C-STORE requests taken straight from the P-DATA PDUs of a receiving association.

For every instance pynetdicom decodes the PDU into objects, runs its state machine, hands the
fragments to its DIMSE provider, decodes the command set with pydicom, builds a request
primitive (validating every UID), hands it from the DUL thread to the association thread and
builds an event for the handler: about a third of the receiver's CPU per small instance.

A receiving association's DUL (``reactor.EventDrivenDUL``) can instead give each P-DATA-TF PDU
to a :class:`StoreAssembler` first. When the PDU starts a C-STORE request (its command set
complete in the first PDV) or continues one, the assembler keeps its fragments; once the last
dataset fragment arrived it calls the store handler and returns the encoded response. Anything
else (C-ECHO, queries, a command split over PDVs, a PDU while pynetdicom holds a partial
message) is left to pynetdicom untouched, so the fast path only ever sees whole C-STOREs.
A PDU that breaks the rules while a C-STORE is being assembled raises
:class:`ProtocolError`: the association is then aborted, as pynetdicom does (PS3.8 AA-8).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from dicomgate.dicom.command import command, element, text, us

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
_HANDLER_FAILED = 0xC211  # pynetdicom's status for an exception in a handler
_COMMAND, _LAST = 0x01, 0x02  # message control header bits (PS3.8 E.2)
_PDV_HEADER = struct.Struct(">LBB")
_ELEMENT_HEADER = struct.Struct("<HHI")
_US = struct.Struct("<H")

log = logging.getLogger(__name__)

Head = TypeVar("Head")
Out = TypeVar("Out")


class ProtocolError(ValueError):
    """The peer's P-DATA breaks the DIMSE message rules (the association must be aborted)."""


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """One complete C-STORE request as it arrived.

    Parameters
    ----------
    context_id
        The presentation context it was sent on.
    message_id
        Its Message ID, answered in the response.
    sop_class_uid, sop_instance_uid
        The Affected SOP Class and Instance UIDs of the command set.
    dataset
        The dataset bytes, encoded in the context's transfer syntax.
    move_originator_ae, move_originator_id
        Set when the store is a sub-operation of a C-MOVE (PS3.7 9.1.1.1).
    """

    context_id: int
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    dataset: bytes
    move_originator_ae: str | None = None
    move_originator_id: int | None = None


StoreHandler = Callable[[StoreRequest], tuple[int, str]]
"""Stores one request; returns the response status and error comment ('' for none)."""


def split_pdvs(body: memoryview) -> list[tuple[int, int, memoryview, int]]:
    """Return the PDV items of a P-DATA-TF body: (context id, control, fragment, offset)."""
    items: list[tuple[int, int, memoryview, int]] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _PDV_HEADER.size:
            raise ProtocolError("a PDV item header is cut short")
        length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
        end = offset + 4 + length
        if length < 2 or end > len(body):
            raise ProtocolError("a PDV item length does not fit its PDU")
        items.append((context_id, control, body[offset + 6 : end], offset))
        offset = end
    return items


def decode_command(raw: memoryview) -> dict[int, bytes]:
    """Return the elements of a command set (group 0000, implicit VR little endian)."""
    elements: dict[int, bytes] = {}
    offset = 0
    while offset < len(raw):
        if len(raw) - offset < _ELEMENT_HEADER.size:
            raise ProtocolError("a command element header is cut short")
        group, tag, length = _ELEMENT_HEADER.unpack_from(raw, offset)
        start = offset + _ELEMENT_HEADER.size
        if group != 0 or start + length > len(raw):
            raise ProtocolError("the command set holds an element outside group 0000")
        elements[tag] = bytes(raw[start : start + length])
        offset = start + length
    return elements


def _ushort(elements: dict[int, bytes], tag: int) -> int | None:
    value = elements.get(tag)
    return _US.unpack(value)[0] if value is not None and len(value) == 2 else None


def _string(elements: dict[int, bytes], tag: int) -> str | None:
    value = elements.get(tag)
    if value is None:
        return None
    return value.decode("ascii", errors="replace").strip(" \0")


def store_request_head(raw: memoryview, context_id: int) -> StoreRequest | None:
    """Return the request of a C-STORE-RQ command set (no dataset yet), else None."""
    try:
        elements = decode_command(raw)
    except ProtocolError:
        return None  # pynetdicom decodes it and answers as it does for any bad message
    message_id = _ushort(elements, 0x0110)
    sop_class, sop_instance = _string(elements, 0x0002), _string(elements, 0x1000)
    if (
        _ushort(elements, 0x0100) != C_STORE_RQ
        or _ushort(elements, 0x0800) in (None, _NO_DATA_SET)
        or message_id is None
        or not sop_class
        or not sop_instance
    ):
        return None
    return StoreRequest(
        context_id,
        message_id,
        sop_class,
        sop_instance,
        b"",
        _string(elements, 0x1030) or None,
        _ushort(elements, 0x1031),
    )


def encode_store_response(
    sop_class_uid: str, sop_instance_uid: str, message_id: int, status: int, comment: str = ""
) -> bytes:
    """Return the command set of a C-STORE-RSP (PS3.7 9.3.1.2)."""
    return command(
        [
            element(0x0002, text(sop_class_uid, b"\0")),
            element(0x0100, us(C_STORE_RSP)),
            element(0x0120, us(message_id)),
            element(0x0800, us(_NO_DATA_SET)),
            element(0x0900, us(status)),
            element(0x0902, text(comment[:64], b" ")) if comment else b"",
            element(0x1000, text(sop_instance_uid, b"\0")),
        ]
    )


def p_data_pdu(context_id: int, command_set: bytes) -> bytes:
    """Return a P-DATA-TF PDU holding ``command_set`` as one last command fragment."""
    pdv = _PDV_HEADER.pack(len(command_set) + 2, context_id, _COMMAND | _LAST) + command_set
    return struct.pack(">BBL", 0x04, 0x00, len(pdv)) + pdv


@dataclass
class MessageAssembler(Generic[Head, Out]):
    """Collects DIMSE messages from P-DATA PDUs: a command whole in one PDV, then its dataset.

    A subclass says which commands it takes (``_start``) and what a complete message gives
    (``_complete``); anything it does not take is left to pynetdicom, as it arrived.
    """

    _head: tuple[int, Head] | None = field(default=None, init=False)
    _fragments: list[memoryview] = field(default_factory=list, init=False)

    @property
    def assembling(self) -> bool:
        """Return True while a message's dataset is still arriving."""
        return self._head is not None

    def reset(self) -> None:
        """Forget a message cut short (the association is aborted or released)."""
        self._head, self._fragments = None, []

    def take(self, body: memoryview) -> tuple[list[tuple[int, Out]], memoryview | None] | None:
        """Take one P-DATA-TF body, or decline it (None) for pynetdicom.

        Declining is only possible when no message is being assembled and the PDU does not
        start one: pynetdicom then gets the PDU as if nothing had looked at it. Otherwise
        returns what the completed messages gave, as (context id, output), and, when a
        message this does not take follows them in the same PDU, the PDV items from there on
        (for pynetdicom). The fragments are kept as views: a dataset is copied once, whole.

        Raises
        ------
        ProtocolError
            When the PDU breaks the message rules while a message is being assembled.
        """
        try:
            items = split_pdvs(body)
        except ProtocolError:
            if self.assembling:
                raise
            return None  # pynetdicom reports the broken PDU itself
        done: list[tuple[int, Out]] = []
        for context_id, control, fragment, offset in items:
            if self._head is None:
                whole_command = control & (_COMMAND | _LAST) == _COMMAND | _LAST
                started = self._start(context_id, fragment) if whole_command else None
                if started is None:
                    return (done, body[offset:]) if offset else None
                head, dataset_follows = started
                if dataset_follows:
                    self._head = (context_id, head)
                else:
                    done.append((context_id, self._complete(context_id, head, None)))
                continue
            if control & _COMMAND or context_id != self._head[0]:
                raise ProtocolError("a command arrived before the last dataset fragment")
            self._fragments.append(fragment)
            if control & _LAST:
                context, head = self._head
                data = b"".join(self._fragments)
                self.reset()
                done.append((context, self._complete(context, head, data)))
        return done, None

    def _start(self, context_id: int, command_set: memoryview) -> tuple[Head, bool] | None:
        """Return the message a whole command set starts and whether a dataset follows."""
        raise NotImplementedError

    def _complete(self, context_id: int, head: Head, dataset: bytes | None) -> Out:
        """Return what a complete message gives."""
        raise NotImplementedError


@dataclass
class StoreAssembler(MessageAssembler[StoreRequest, bytes]):
    """Collects the C-STOREs of one association and answers them through ``handler``.

    Its output per C-STORE is the encoded response to send.

    Parameters
    ----------
    handler
        Stores a complete request and returns its status and comment.
    accepted
        The accepted presentation context ids (a request on another is pynetdicom's to refuse).
    """

    handler: StoreHandler
    accepted: frozenset[int]

    def _start(self, context_id: int, command_set: memoryview) -> tuple[StoreRequest, bool] | None:
        if context_id not in self.accepted:
            return None
        request = store_request_head(command_set, context_id)
        return None if request is None else (request, True)

    def _complete(self, context_id: int, head: StoreRequest, dataset: bytes | None) -> bytes:
        request = replace(head, dataset=dataset or b"")
        try:
            status, comment = self.handler(request)
        except Exception:  # as pynetdicom answers a failing C-STORE handler, and goes on
            log.exception("the C-STORE handler failed")
            status, comment = _HANDLER_FAILED, "the C-STORE handler failed"
        return encode_store_response(
            request.sop_class_uid, request.sop_instance_uid, request.message_id, status, comment
        )
