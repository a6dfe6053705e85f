"""A synchronous C-STORE SCU over a plain socket: the C-MOVE sub-operation association.

pynetdicom's own association runs two threads that hand each message over through queues
and millisecond sleeps; per small instance that costs several milliseconds, more on a loaded
machine. C-MOVE sub-operations are strictly one request, one response, so this sender writes
the request and blocks on the response on the calling thread: the PDUs are encoded with
pynetdicom's PDU classes, the stored dataset bytes are sent as they are (PS3.8 9.3.5).

It offers the API pynetdicom's C-MOVE service uses on the sub-association:
``is_established``, ``accepted_contexts``, ``send_c_store()``, ``release()``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.transport import AddressInformation

from dicomgate.dicom.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

log = logging.getLogger(__name__)

_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_ASSOCIATE_AC, _ASSOCIATE_RJ, _P_DATA, _RELEASE_RP, _ABORT = 0x02, 0x03, 0x04, 0x06, 0x07
_RELEASE_RQ = b"\x05\x00" + struct.pack(">I", 4) + bytes(4)
_ABORT_RQ = b"\x07\x00" + struct.pack(">I", 4) + bytes(4)
_OWN_MAX_PDU = 262144
_UNLIMITED_CHUNK = 1 << 20
_FLUSH_BYTES = 4 << 20


class SenderError(OSError):
    """The peer broke the protocol, refused, or closed the connection."""


class RawInstance(Dataset):
    """An instance to send as stored: its UIDs as elements, its encoded dataset as ``raw``.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid
        Its UIDs (pynetdicom's move service reads ``SOPInstanceUID`` to list failures).
    raw
        The dataset bytes as stored, without preamble and file meta.
    transfer_syntax
        The syntax ``raw`` is encoded in.
    """

    def __init__(
        self, sop_class_uid: str, sop_instance_uid: str, raw: memoryview, transfer_syntax: str
    ) -> None:
        super().__init__()
        self.SOPClassUID = sop_class_uid
        self.SOPInstanceUID = sop_instance_uid
        self.__dict__["raw_bytes"] = raw
        self.__dict__["stored_syntax"] = transfer_syntax


class Unsendable(Dataset):
    """An instance that cannot be sent (blob missing, undecodable): only its UIDs.

    Handed to pynetdicom's retrieve services so the failed sub-operation is counted and listed
    under its SOP Instance UID; both pynetdicom's sender and :class:`StoreSender` refuse it.
    """

    def __init__(self, sop_class_uid: str, sop_instance_uid: str) -> None:
        super().__init__()
        self.SOPClassUID = sop_class_uid
        self.SOPInstanceUID = sop_instance_uid


class _Context:
    """An accepted presentation context, shaped like pynetdicom's for ``accepted_pairs``."""

    def __init__(self, context_id: int, abstract_syntax: str, transfer_syntax: str) -> None:
        self.context_id = context_id
        self.abstract_syntax = UID(abstract_syntax)
        self.transfer_syntax = [UID(transfer_syntax)]
        self.as_scu = True


def _associate_rq(calling: str, called: str, contexts: Sequence[Any]) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = _APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    primitive.calling_presentation_address = AddressInformation.from_tuple(("127.0.0.1", 0))
    primitive.called_presentation_address = AddressInformation.from_tuple(("127.0.0.1", 0))
    for number, context in enumerate(contexts):
        context.context_id = 2 * number + 1
    primitive.presentation_context_definition_list = list(contexts)
    length = MaximumLengthNotification()
    length.maximum_length_received = _OWN_MAX_PDU
    klass = ImplementationClassUIDNotification()
    klass.implementation_class_uid = UID(IMPLEMENTATION_CLASS_UID)
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    primitive.user_information = [length, klass, version]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, tag, len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def _store_command(
    sop_class: str,
    sop_instance: str,
    msg_id: int,
    priority: int,
    originator_aet: str | None,
    originator_id: int | None,
) -> bytes:
    """Encode a C-STORE-RQ command set (implicit VR little endian, PS3.7 9.3.1.1)."""
    body = b"".join(
        [
            _element(0x0002, _text(sop_class, b"\0")),
            _element(0x0100, struct.pack("<H", 0x0001)),  # Command Field: C-STORE-RQ
            _element(0x0110, struct.pack("<H", msg_id)),
            _element(0x0700, struct.pack("<H", priority)),
            _element(0x0800, struct.pack("<H", 0x0000)),  # a data set follows
            _element(0x1000, _text(sop_instance, b"\0")),
            _element(0x1030, _text(originator_aet, b" ")) if originator_aet else b"",
            _element(0x1031, struct.pack("<H", originator_id)) if originator_id else b"",
        ]
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _command_values(command: bytes) -> dict[int, bytes]:
    """Return element (0000,xxxx) -> value of an implicit VR little endian command set."""
    values, offset = {}, 0
    while offset + 8 <= len(command):
        _group, element, length = struct.unpack_from("<HHI", command, offset)
        values[element] = command[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return values


class StoreSender:
    """An association to a storage SCP, driven synchronously by the calling thread.

    Parameters
    ----------
    host, port
        Where the peer listens.
    calling, called
        Our AE title and the peer's.
    contexts
        Presentation contexts to propose (``pynetdicom.build_context`` results).
    timeout
        Seconds to wait for any answer of the peer.
    """

    def __init__(
        self,
        host: str,
        port: int,
        calling: str,
        called: str,
        contexts: Sequence[Any],
        timeout: float,
    ) -> None:
        self.is_established = False
        self.accepted_contexts: list[_Context] = []
        self._peer_max = 0
        self._sock = socket.create_connection((host, port), timeout=timeout)
        # pynetdicom's move service closes ``dul.socket`` of a sub-association that failed.
        self.dul = SimpleNamespace(socket=self._sock)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        proposed = {2 * n + 1: str(cx.abstract_syntax) for n, cx in enumerate(contexts)}
        self._sock.sendall(_associate_rq(calling, called, contexts))
        try:
            kind, body = self._read_pdu()
        except OSError:
            self._sock.close()
            raise
        if kind != _ASSOCIATE_AC:
            log.warning("destination %s refused the association (PDU type %d)", called, kind)
            self._sock.close()
            return
        self._accept(body, proposed)

    def _accept(self, body: bytes, proposed: dict[int, str]) -> None:
        pdu = A_ASSOCIATE_AC()
        pdu.decode(body)
        primitive = pdu.to_primitive()
        for result in primitive.presentation_context_definition_results_list:
            if result.result == 0 and result.context_id in proposed:
                ts = str(result.transfer_syntax[0])
                context = _Context(result.context_id, proposed[result.context_id], ts)
                self.accepted_contexts.append(context)
        for item in primitive.user_information:
            if isinstance(item, MaximumLengthNotification):
                self._peer_max = int(item.maximum_length_received or 0)
        self.is_established = True

    # ------------------------------------------------------------------ PDUs

    def _recv_exact(self, size: int) -> bytes:
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = self._sock.recv_into(view[got:])
            if n == 0:
                raise SenderError("the destination closed the connection")
            got += n
        return bytes(buf)

    def _read_pdu(self) -> tuple[int, bytes]:
        header = self._recv_exact(6)
        (length,) = struct.unpack(">I", header[2:6])
        return header[0], header + self._recv_exact(length)

    def _pdus(
        self, context_id: int, data: memoryview, command: bool
    ) -> Iterator[bytes | memoryview]:
        """Yield P-DATA-TF PDUs of one PDV each, as header and value slices (no copies)."""
        chunk = (self._peer_max - 6) if self._peer_max > 6 else _UNLIMITED_CHUNK
        for start in range(0, max(len(data), 1), chunk):
            piece = data[start : start + chunk]
            last = start + chunk >= len(data)
            control = (0x01 if command else 0x00) | (0x02 if last else 0x00)
            yield struct.pack(
                ">BBIIBB", 0x04, 0, len(piece) + 6, len(piece) + 2, context_id, control
            )
            yield piece

    def _write(self, parts: Iterable[bytes | memoryview]) -> None:
        """Send ``parts`` in few large writes (one per message unless it is very large)."""
        buffer = bytearray()
        for part in parts:
            buffer += part
            if len(buffer) >= _FLUSH_BYTES:
                self._sock.sendall(buffer)
                buffer.clear()
        if buffer:
            self._sock.sendall(buffer)

    def _read_command(self) -> dict[int, bytes]:
        fragments = bytearray()
        while True:
            kind, pdu = self._read_pdu()
            if kind != _P_DATA:
                raise SenderError(f"expected a C-STORE response, got PDU type {kind}")
            offset = 6
            while offset < len(pdu):
                (length,) = struct.unpack(">I", pdu[offset : offset + 4])
                control = pdu[offset + 5]
                fragments += pdu[offset + 6 : offset + 4 + length]
                offset += 4 + length
                if control & 0x01 and control & 0x02:
                    return _command_values(bytes(fragments))

    # ------------------------------------------------------------------ DIMSE

    def _context_for(self, sop_class: str, syntaxes: Sequence[str]) -> _Context | None:
        for ts in syntaxes:
            for cx in self.accepted_contexts:
                if cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == ts:
                    return cx
        return None

    def _payload(self, dataset: Dataset) -> tuple[_Context, memoryview]:
        sop_class = str(dataset.SOPClassUID)
        raw = dataset.__dict__.get("raw_bytes")
        if raw is not None:
            cx = self._context_for(sop_class, [dataset.__dict__["stored_syntax"]])
            if cx is not None:
                return cx, raw
            raise ValueError("no accepted presentation context for the stored transfer syntax")
        if isinstance(dataset, Unsendable):
            raise ValueError("the instance could not be read")
        uncompressed = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]
        cx = self._context_for(sop_class, uncompressed)
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
        command = _store_command(
            str(dataset.SOPClassUID),
            str(dataset.SOPInstanceUID),
            msg_id,
            priority,
            originator_aet,
            originator_id,
        )
        self._write(
            itertools.chain(
                self._pdus(cx.context_id, memoryview(command), command=True),
                self._pdus(cx.context_id, payload, command=False),
            )
        )
        response = self._read_command()
        status = Dataset()
        raw_status = response.get(0x0900, b"")
        status.Status = struct.unpack("<H", raw_status)[0] if len(raw_status) == 2 else 0xC000
        comment = response.get(0x0902)
        if comment:
            status.ErrorComment = comment.decode("ascii", "replace").strip(" \0")[:64]
        return status

    def release(self) -> None:
        """Release the association (abort when the peer does not answer) and close."""
        if not self.is_established:
            return
        self.is_established = False
        try:
            self._sock.sendall(_RELEASE_RQ)
            while self._read_pdu()[0] not in (_RELEASE_RP, _ABORT):
                pass
        except OSError:
            with contextlib.suppress(OSError):
                self._sock.sendall(_ABORT_RQ)
        finally:
            self._sock.close()
