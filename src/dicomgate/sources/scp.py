"""The DICOM receiver: C-ECHO and C-STORE SCP for every storage SOP class.

Handlers are thin: hand the received bytes (never decoded and re-encoded) to intake, map the
outcome or exception to a DIMSE status in one place. Success is answered only after
``receive()`` returned, that is after the blob was fsynced and the index committed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomgate.auth.audit import AuditTrail
from dicomgate.auth.dicom_guard import AssociationGuard
from dicomgate.auth.settings import DicomOperation
from dicomgate.auth.tls import dicom_server_context
from dicomgate.errors import dimse_store_status
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, ReceiveResult, receive
from dicomgate.settings import Settings

log = logging.getLogger(__name__)

# Identifiers (names, IDs) must never reach the logs.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
_config.LOG_HANDLER_LEVEL = "none"
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)  # Linux only

_STATUS_BY_OUTCOME = {
    Outcome.STORED: 0x0000,
    Outcome.ALREADY_STORED: 0x0000,
    Outcome.REPLACED: 0x0000,
    Outcome.CONFLICTING: 0xA900,
    Outcome.REJECTED: 0xC000,
}


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


def store_status(result: ReceiveResult) -> Dataset:
    """Return the C-STORE response status for an intake result."""
    return _status(_STATUS_BY_OUTCOME[result.outcome], result.reason)


def _origin(event: Any) -> Origin:
    requestor = event.assoc.requestor
    return Origin(
        OriginKind.DIMSE,
        remote_ae=str(requestor.ae_title).strip(),
        called_ae=str(event.assoc.acceptor.ae_title).strip(),
        remote_host=str(requestor.address),
    )


def _on_store(event: Any, intake: Intake, guard: AssociationGuard) -> Dataset:
    refused = guard.refusal(event, DicomOperation.STORE)
    if refused is not None:
        return _status(refused, "calling AE may not store")
    try:
        data = event.request.DataSet.getvalue()
        result = receive(intake, data, _origin(event), str(event.context.transfer_syntax))
    except Exception as exc:
        log.exception("C-STORE failed (association %s)", event.assoc.name)
        return _status(dimse_store_status(exc), str(exc))
    return store_status(result)


def _on_echo(event: Any, guard: AssociationGuard) -> int:
    return guard.refusal(event, DicomOperation.ECHO) or 0x0000


def _acknowledge_promptly(assoc_socket: Any) -> None:
    """Re-arm TCP_QUICKACK after every read of this association's socket.

    A sender with Nagle on (dcmtk's default, many modalities) holds its last small segment until
    our ACK arrives; Linux delays that ACK by up to 40 ms unless quick-ACK mode is re-armed after
    each read, which caps such a sender at about 12 instances/s.
    """
    read = assoc_socket.recv
    raw = assoc_socket.socket

    def recv(nr_bytes: int) -> bytearray:
        data: bytearray = read(nr_bytes)
        # A closed peer makes setsockopt fail; the next read reports it properly.
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        return data

    assoc_socket.recv = recv


def _on_open(event: Any) -> None:
    # Answer promptly: without NODELAY our small responses wait on the sender's delayed ACKs.
    assoc_socket = event.assoc.dul.socket
    if assoc_socket is None or assoc_socket.socket is None:
        return
    assoc_socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if _TCP_QUICKACK:
        _acknowledge_promptly(assoc_socket)


_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
# pynetdicom accepts the first syntax of OUR list that the peer proposed. Encoded syntaxes come
# first so a compressed instance is taken as the modality sent it, never transcoded by the peer.
PREFERRED_TRANSFER_SYNTAXES = [
    *(ts for ts in ALL_TRANSFER_SYNTAXES if ts not in _UNCOMPRESSED),
    *_UNCOMPRESSED,
]


def build_ae(settings: Settings) -> AE:
    """Return an AE that accepts every storage SOP class in every transfer syntax."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.dicom_max_associations
    ae.maximum_pdu_size = settings.dicom_max_pdu
    ae.acse_timeout = settings.dicom_acse_timeout
    ae.dimse_timeout = settings.dicom_dimse_timeout
    ae.network_timeout = settings.dicom_network_timeout
    ae.require_called_aet = True
    # pynetdicom rejects other calling AEs at association (reason 3: calling AE not recognised).
    ae.require_calling_aet = [ae.strip() for ae in settings.dicom_allowed_calling_aes]
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, PREFERRED_TRANSFER_SYNTAXES)
    return ae


class Receiver:
    """A running C-STORE SCP bound to the configured port.

    With ``auth.dicom_tls`` a second listener speaks DICOM over TLS on its own port (or
    replaces the plain one); both admit only the peers ``auth.dicom_peers`` allows.

    Parameters
    ----------
    settings
        Port, AE title, limits, peers, TLS.
    intake
        Where received instances go.
    audit
        Where rejected associations and refused requests are recorded.
    """

    def __init__(self, settings: Settings, intake: Intake, audit: AuditTrail | None = None) -> None:
        self.settings = settings
        self.ae = build_ae(settings)
        self.guard = AssociationGuard(settings, audit)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, _on_store, [intake, self.guard]),
            (evt.EVT_C_ECHO, _on_echo, [self.guard]),
            (evt.EVT_CONN_OPEN, _on_open),
            (evt.EVT_REQUESTED, self.guard.on_requested),
        ]
        tls = settings.auth.dicom_tls
        self.tls_server: Any = None
        plain = None
        if tls is None or tls.plain_listener:
            plain = self._start(settings.dicom_port, handlers)
        if tls is not None:
            self.tls_server = self._start(tls.port, handlers, dicom_server_context(tls))
        self.server = plain or self.tls_server

    def _start(self, port: int, handlers: list[Any], context: Any = None) -> Any:
        server = self.ae.start_server(
            (self.settings.dicom_host, port),
            block=False,
            evt_handlers=handlers,
            ssl_context=context,
        )
        assert server is not None  # non-blocking start always returns the server
        return server

    @property
    def port(self) -> int:
        """Return the bound port of the plain listener, else of the TLS one (0 resolved)."""
        return int(self.server.server_address[1])

    @property
    def tls_port(self) -> int | None:
        """Return the bound port of the TLS listener, if there is one."""
        return int(self.tls_server.server_address[1]) if self.tls_server else None

    def stop(self) -> None:
        """Stop accepting and close every association."""
        self.ae.shutdown()
