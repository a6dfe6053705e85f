"""The DICOM receiver: C-ECHO and C-STORE SCP for every storage SOP class.

Handlers are thin: hand the received bytes (never decoded and re-encoded) to intake, map the
outcome or exception to a DIMSE status in one place. Success is answered only after
``receive()`` returned, that is after the blob was fsynced and the index committed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

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


def _on_store(event: Any, intake: Intake) -> Dataset:
    try:
        data = event.request.DataSet.getvalue()
        result = receive(intake, data, _origin(event), str(event.context.transfer_syntax))
    except Exception as exc:
        log.exception("C-STORE failed (association %s)", event.assoc.name)
        return _status(dimse_store_status(exc), str(exc))
    return store_status(result)


def _on_echo(event: Any) -> int:
    return 0x0000


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


class ReceiverAE(AE):
    """The receiver's AE: a C-MOVE handler may bring its own sub-association.

    pynetdicom's C-MOVE service opens the association to the move destination with
    ``ae.associate(addr, port, **kwargs)``, ``kwargs`` being those the handler yielded with the
    destination; a ``connect(addr, port, called_ae)`` callable among them is used instead and
    must return an object with the association methods that service calls.
    """

    def associate(self, addr: str, port: int, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Open an association, or let the handler's ``connect`` open its own."""
        connect = kwargs.pop("connect", None)
        if connect is not None:
            return connect(addr, port, kwargs.get("ae_title", ""))
        return super().associate(addr, port, *args, **kwargs)


def build_ae(settings: Settings) -> AE:
    """Return an AE that accepts every storage SOP class in every transfer syntax."""
    ae = ReceiverAE(ae_title=settings.ae_title)
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


@dataclass(frozen=True, slots=True)
class SupportedContext:
    """A presentation context an extension accepts (see ``AE.add_supported_context``).

    An abstract syntax the receiver already supports keeps its transfer syntaxes (new ones are
    appended) and takes the roles given here.
    """

    abstract_syntax: str
    transfer_syntaxes: Sequence[str]
    scu_role: bool | None = None
    scp_role: bool | None = None


@dataclass(frozen=True, slots=True)
class Extension:
    """More DIMSE services answered on the receiver's AE and port.

    The composition root (``app.py``) passes extensions such as the query/retrieve SCP of
    ``access.dimse``, so one AE title and port serve C-STORE and everything else.

    Parameters
    ----------
    contexts
        Presentation contexts to accept in addition to Verification and every storage class.
    handlers
        pynetdicom event handlers, ``(event, handler)`` or ``(event, handler, args)``.
    """

    contexts: Sequence[SupportedContext] = ()
    handlers: Sequence[tuple[Any, ...]] = ()


class Receiver:
    """A running C-STORE SCP bound to the configured port.

    Parameters
    ----------
    settings
        Port, AE title, limits.
    intake
        Where received instances go.
    extensions
        Further services answered on the same AE (see :class:`Extension`).
    """

    def __init__(
        self, settings: Settings, intake: Intake, extensions: Sequence[Extension] = ()
    ) -> None:
        self.settings = settings
        self.ae = build_ae(settings)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, _on_store, [intake]),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_CONN_OPEN, _on_open),
        ]
        for extension in extensions:
            for cx in extension.contexts:
                self.ae.add_supported_context(
                    cx.abstract_syntax, list(cx.transfer_syntaxes), cx.scu_role, cx.scp_role
                )
            handlers.extend(extension.handlers)
        server = self.ae.start_server(
            (settings.dicom_host, settings.dicom_port),
            block=False,
            evt_handlers=handlers,
        )
        assert server is not None  # non-blocking start always returns the server
        self.server = server

    @property
    def port(self) -> int:
        """Return the bound port (useful when configured as 0)."""
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Stop accepting and close every association."""
        self.server.shutdown()
