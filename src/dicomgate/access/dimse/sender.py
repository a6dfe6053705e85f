"""A synchronous C-STORE SCU over a plain socket: the C-MOVE sub-operation association.

pynetdicom's own association runs two threads that hand each message over through queues
and millisecond sleeps; per small instance that costs several milliseconds, more on a loaded
machine. This sender negotiates with pynetdicom's PDU classes, then sends over a
:class:`~dicomgate.access.dimse.wire.StoreChannel` on the calling thread.

It offers the API pynetdicom's C-MOVE service uses on the sub-association:
``is_established``, ``accepted_contexts``, ``send_c_store()``, ``release()``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.transport import AddressInformation

from dicomgate.access.dimse.wire import ABORT, RELEASE_RP, StoreChannel, Wire
from dicomgate.dicom.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

log = logging.getLogger(__name__)

_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_ASSOCIATE_AC = 0x02
_RELEASE_RQ = b"\x05\x00" + struct.pack(">I", 4) + bytes(4)
_ABORT_RQ = b"\x07\x00" + struct.pack(">I", 4) + bytes(4)
_OWN_MAX_PDU = 262144


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
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._wire = Wire(self._sock, 0)
        self._channel = StoreChannel(self._wire, self.accepted_contexts)
        # pynetdicom's move service closes ``dul.socket`` of a sub-association that failed.
        self.dul = SimpleNamespace(socket=self._sock)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        proposed = {2 * n + 1: str(cx.abstract_syntax) for n, cx in enumerate(contexts)}
        self._sock.sendall(_associate_rq(calling, called, contexts))
        try:
            kind, body = self._wire.read_pdu()
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
                self._wire.peer_max = int(item.maximum_length_received or 0)
        self.is_established = True

    def send_c_store(
        self,
        dataset: Dataset,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        """Send one C-STORE request and return the response status (see :class:`StoreChannel`)."""
        return self._channel.send_c_store(dataset, msg_id, priority, originator_aet, originator_id)

    def release(self) -> None:
        """Release the association (abort when the peer does not answer) and close."""
        if not self.is_established:
            return
        self.is_established = False
        try:
            self._sock.sendall(_RELEASE_RQ)
            while self._wire.read_pdu()[0] not in (RELEASE_RP, ABORT):
                pass
        except OSError:
            with contextlib.suppress(OSError):
                self._sock.sendall(_ABORT_RQ)
        finally:
            self._sock.close()
