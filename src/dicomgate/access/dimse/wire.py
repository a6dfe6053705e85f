"""DIMSE on a plain socket: P-DATA framing, the few command sets a retrieve writes, C-STOREs.

pynetdicom hands every message through two threads, queues and millisecond sleeps; a
retrieve's sub-operations are strictly one request, one response, so :class:`StoreChannel`
writes the request and blocks on the response on the calling thread. Stored dataset bytes
are sent as they are (PS3.8 9.3.5); command sets are encoded here (implicit VR little endian).
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydicom import Dataset
from pynetdicom.dsutils import encode

from dicomgate.dicom.command import command as _command
from dicomgate.dicom.command import element, text, us

P_DATA, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
C_STORE_RQ, C_STORE_RSP, C_GET_RSP, C_MOVE_RSP, C_CANCEL_RQ = 0x0001, 0x8001, 0x8010, 0x8021, 0x0FFF
_UNLIMITED_CHUNK = 1 << 20
_FLUSH_BYTES = 4 << 20
# A decoded dataset is encoded in the first of these the peer accepted; deflated last (it
# costs CPU), for a requester that proposed nothing else.
_DECODED_SYNTAXES = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
)


class SenderError(OSError):
    """The peer broke the protocol, refused, or closed the connection."""


def store_command(
    sop_class: str,
    sop_instance: str,
    msg_id: int,
    priority: int,
    originator_aet: str | None,
    originator_id: int | None,
) -> bytes:
    """Encode a C-STORE-RQ command set (PS3.7 9.3.1.1)."""
    return _command(
        [
            element(0x0002, text(sop_class, b"\0")),
            element(0x0100, us(C_STORE_RQ)),
            element(0x0110, us(msg_id)),
            element(0x0700, us(priority)),
            element(0x0800, us(0x0000)),  # a data set follows
            element(0x1000, text(sop_instance, b"\0")),
            element(0x1030, text(originator_aet, b" ")) if originator_aet else b"",
            element(0x1031, us(originator_id)) if originator_id else b"",
        ]
    )


def pending_command(field: int, sop_class: str, responding_to: int, counts: Sequence[int]) -> bytes:
    """Encode a pending C-GET/C-MOVE-RSP without identifier (PS3.7 9.3.3.2, 9.3.4.2).

    ``counts`` are the remaining, completed, failed and warning sub-operations.
    """
    remaining, completed, failed, warning = counts
    return _command(
        [
            element(0x0002, text(sop_class, b"\0")),
            element(0x0100, us(field)),
            element(0x0120, us(responding_to)),
            element(0x0800, us(0x0101)),  # no data set
            element(0x0900, us(0xFF00)),
            element(0x1020, us(remaining)),
            element(0x1021, us(completed)),
            element(0x1022, us(failed)),
            element(0x1023, us(warning)),
        ]
    )


def command_values(command: bytes) -> dict[int, bytes]:
    """Return element (0000,xxxx) -> value of an implicit VR little endian command set."""
    values, offset = {}, 0
    while offset + 8 <= len(command):
        _group, number, length = struct.unpack_from("<HHI", command, offset)
        values[number] = command[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return values


def us_value(values: dict[int, bytes], number: int) -> int | None:
    """Return the US value of command element ``number``, or None when absent or malformed."""
    raw = values.get(number, b"")
    return struct.unpack("<H", raw)[0] if len(raw) == 2 else None


class Wire:
    """PDUs over a connected socket.

    Parameters
    ----------
    sock
        The connected socket (blocking, with the association's timeout).
    peer_max
        The largest PDU the peer receives (0: unlimited).
    """

    def __init__(self, sock: socket.socket, peer_max: int) -> None:
        self.sock = sock
        self.peer_max = peer_max
        self.pending = bytearray()  # small messages that go out with the next write

    def recv_exact(self, size: int) -> bytes:
        """Return exactly ``size`` bytes."""
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise SenderError("the peer closed the connection")
            got += n
        return bytes(buf)

    def read_pdu(self) -> tuple[int, bytes]:
        """Return the next PDU's type and its bytes (header included)."""
        header = self.recv_exact(6)
        (length,) = struct.unpack(">I", header[2:6])
        return header[0], header + self.recv_exact(length)

    def pdus(
        self, context_id: int, data: memoryview, command: bool
    ) -> Iterator[bytes | memoryview]:
        """Yield P-DATA-TF PDUs of one PDV each, as header and value slices (no copies)."""
        chunk = (self.peer_max - 6) if self.peer_max > 6 else _UNLIMITED_CHUNK
        for start in range(0, max(len(data), 1), chunk):
            piece = data[start : start + chunk]
            last = start + chunk >= len(data)
            control = (0x01 if command else 0x00) | (0x02 if last else 0x00)
            yield struct.pack(
                ">BBIIBB", P_DATA, 0, len(piece) + 6, len(piece) + 2, context_id, control
            )
            yield piece

    def write(self, parts: Iterable[bytes | memoryview]) -> None:
        """Send what is pending and ``parts`` in few large writes."""
        buffer, self.pending = self.pending, bytearray()
        for part in parts:
            buffer += part
            if len(buffer) >= _FLUSH_BYTES:
                self.sock.sendall(buffer)
                buffer.clear()
        if buffer:
            self.sock.sendall(buffer)

    def flush(self) -> None:
        """Send what is pending."""
        if self.pending:
            self.write(())

    def read_command(self) -> dict[int, bytes]:
        """Return the values of the next command set the peer sends (data sets: none expected)."""
        fragments = bytearray()
        while True:
            kind, pdu = self.read_pdu()
            if kind != P_DATA:
                raise SenderError(f"expected a DIMSE message, got PDU type {kind}")
            offset = 6
            while offset < len(pdu):
                (length,) = struct.unpack(">I", pdu[offset : offset + 4])
                control = pdu[offset + 5]
                fragments += pdu[offset + 6 : offset + 4 + length]
                offset += 4 + length
                if control & 0x01 and control & 0x02:
                    return command_values(bytes(fragments))


class RawInstance(Dataset):
    """An instance to send as stored: its UIDs as elements, its encoded dataset as ``raw``.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid
        Its UIDs (pynetdicom's retrieve services read ``SOPInstanceUID`` to list failures).
    raw
        The dataset bytes as stored, without preamble and file meta.
    transfer_syntax
        The syntax ``raw`` is encoded in.
    """

    def __init__(
        self, sop_class_uid: str, sop_instance_uid: str, raw: memoryview, transfer_syntax: str
    ) -> None:
        super().__init__()
        # Plain attributes, not elements: making validated elements cost a tenth of the time
        # of sending a small instance, and only these two names are ever read.
        self.__dict__.update(sop_class=sop_class_uid, sop_instance=sop_instance_uid)
        self.__dict__["raw_bytes"] = raw
        self.__dict__["stored_syntax"] = transfer_syntax

    def __bool__(self) -> bool:
        """Return True: pynetdicom sends a yielded dataset only when it is truthy."""
        return True

    @property
    def SOPClassUID(self) -> str:  # noqa: N802 (the DICOM keyword pynetdicom reads)
        """Return the SOP Class UID."""
        return str(self.__dict__["sop_class"])

    @property
    def SOPInstanceUID(self) -> str:  # noqa: N802
        """Return the SOP Instance UID."""
        return str(self.__dict__["sop_instance"])


class Unsendable(Dataset):
    """An instance that cannot be sent (blob missing, undecodable): only its UIDs.

    Handed to pynetdicom's retrieve services so the failed sub-operation is counted and listed
    under its SOP Instance UID; pynetdicom's sender and :class:`StoreChannel` both refuse it.
    """

    def __init__(self, sop_class_uid: str, sop_instance_uid: str) -> None:
        super().__init__()
        self.SOPClassUID = sop_class_uid
        self.SOPInstanceUID = sop_instance_uid


class StoreChannel:
    """Sends C-STOREs over a :class:`Wire` under the presentation contexts the peer accepted.

    Parameters
    ----------
    wire
        The connection.
    contexts
        Accepted contexts as SCU: objects with ``context_id``, ``abstract_syntax`` and
        ``transfer_syntax`` (pynetdicom's ``PresentationContext`` or alike).
    on_cancel
        Called with the message ID a C-CANCEL-RQ read on the way names.
    """

    def __init__(self, wire: Wire, contexts: Sequence[Any], on_cancel: Any = None) -> None:
        self.wire = wire
        self.contexts = contexts  # a live list: a sender fills it once the peer accepted
        self.on_cancel = on_cancel

    def _context_for(self, sop_class: str, syntaxes: Sequence[str]) -> Any | None:
        for ts in syntaxes:
            for cx in self.contexts:
                if cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == ts:
                    return cx
        return None

    def _payload(self, dataset: Dataset) -> tuple[Any, memoryview]:
        sop_class = str(dataset.SOPClassUID)
        raw = dataset.__dict__.get("raw_bytes")
        if raw is not None:
            cx = self._context_for(sop_class, [dataset.__dict__["stored_syntax"]])
            if cx is not None:
                return cx, raw
            raise ValueError("no accepted presentation context for the stored transfer syntax")
        if isinstance(dataset, Unsendable):
            raise ValueError("the instance could not be read")
        cx = self._context_for(sop_class, _DECODED_SYNTAXES)
        if cx is None:
            raise ValueError("no accepted presentation context for this SOP class")
        ts = cx.transfer_syntax[0]
        encoded = encode(dataset, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        if encoded is None:
            raise ValueError("the instance cannot be encoded")
        return cx, memoryview(encoded)

    def send_c_store(
        self,
        dataset: Dataset,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        """Send one C-STORE request and return the response status dataset.

        Raises
        ------
        ValueError
            When no accepted context fits the instance (nothing was sent).
        OSError
            When the connection fails or the peer breaks the protocol.
        """
        cx, payload = self._payload(dataset)
        command = store_command(
            str(dataset.SOPClassUID),
            str(dataset.SOPInstanceUID),
            msg_id,
            priority,
            originator_aet,
            originator_id,
        )
        wire = self.wire
        wire.write(
            itertools.chain(
                wire.pdus(cx.context_id, memoryview(command), command=True),
                wire.pdus(cx.context_id, payload, command=False),
            )
        )
        return self._status(self._response())

    def _response(self) -> dict[int, bytes]:
        while True:
            values = self.wire.read_command()
            if us_value(values, 0x0100) != C_CANCEL_RQ:
                return values
            if self.on_cancel is not None:
                self.on_cancel(us_value(values, 0x0120))

    @staticmethod
    def _status(response: dict[int, bytes]) -> Dataset:
        code = us_value(response, 0x0900)
        status = _Status(0xC000 if code is None else code)
        comment = response.get(0x0902)
        if comment:
            status.ErrorComment = comment.decode("ascii", "replace").strip(" \0")[:64]
        return status


class _Status(Dataset):
    """A C-STORE response status; ``Status`` is a plain attribute (see :class:`RawInstance`)."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.__dict__["code"] = code

    @property
    def Status(self) -> int:  # noqa: N802
        """Return the status code."""
        return int(self.__dict__["code"])
