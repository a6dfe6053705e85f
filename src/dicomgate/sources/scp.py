"""The DICOM receiver: C-ECHO and C-STORE SCP for every storage SOP class.

Handlers are thin: hand the received bytes (never decoded and re-encoded) to intake, map the
outcome or exception to a DIMSE status in one place. Success is answered only after
``receive()`` returned, that is after the blob was fsynced and the index committed.
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicomgate.auth.audit import AuditTrail
from dicomgate.auth.dicom_guard import AssociationGuard
from dicomgate.auth.settings import DicomOperation
from dicomgate.auth.tls import dicom_server_context
from dicomgate.dicom.fast_store import StoreRequest
from dicomgate.dicom.reactor import EventDrivenRequestHandler, take_stores_of, tune_connection
from dicomgate.dicom.store_response import answer_stores_quickly
from dicomgate.errors import dimse_store_status
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, ReceiveResult, receive
from dicomgate.settings import Settings
from dicomgate.sources.moves import active_moves
from dicomgate.sources.scp_workers import start_workers, stop_workers

log = logging.getLogger(__name__)

_GC_INTERVAL = 60.0
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


def store_status(result: ReceiveResult) -> tuple[int, str]:
    """Return the C-STORE response status and error comment for an intake result."""
    return _STATUS_BY_OUTCOME[result.outcome], result.reason


def _origin(assoc: Any) -> Origin:
    requestor = assoc.requestor
    return Origin(
        OriginKind.DIMSE,
        remote_ae=str(requestor.ae_title).strip(),
        called_ae=str(assoc.acceptor.ae_title).strip(),
        remote_host=str(requestor.address),
    )


def _store(
    assoc: Any,
    request: StoreRequest,
    transfer_syntax: str,
    intake: Intake,
    guard: AssociationGuard,
) -> tuple[int, str]:
    """Store one C-STORE request's dataset; return the response status and comment."""
    refused = guard.refusal_on(assoc, DicomOperation.STORE)
    if refused is not None:
        return refused, "calling AE may not store"
    admission = guard.admission(assoc)
    try:
        # A C-STORE that is a sub-operation of our own C-MOVE gets the retrieve's origin.
        move = active_moves.lookup(
            intake.db, request.move_originator_ae, request.move_originator_id
        )
        origin = move.origin if move else _origin(assoc)
        result = receive(intake, request.dataset, origin, transfer_syntax)
        if move:
            move.collect(result)
    except Exception as exc:
        log.exception("C-STORE failed (association %s)", assoc.name)
        if admission is not None:
            admission.count(False, None)
        return dimse_store_status(exc), str(exc)
    if admission is not None:  # counted here, audited once when the association ends
        admission.count(result.ok, result.staging_pk)
    return store_status(result)


def _on_store(event: Any, intake: Intake, guard: AssociationGuard) -> Dataset:
    request = event.request
    store = StoreRequest(
        event.context.context_id,
        request.MessageID,
        str(request.AffectedSOPClassUID),
        str(request.AffectedSOPInstanceUID),
        request.DataSet.getvalue(),
        request.MoveOriginatorApplicationEntityTitle,
        request.MoveOriginatorMessageID,
    )
    status, comment = _store(event.assoc, store, str(event.context.transfer_syntax), intake, guard)
    return _status(status, comment)


def _take_stores(event: Any, intake: Intake, guard: AssociationGuard) -> None:
    """Let the association's DUL take whole C-STOREs itself (``dicom.fast_store``).

    Only when the C-STORE handler is still ours: an extension that binds its own keeps
    pynetdicom's path.
    """
    assoc = event.assoc
    bound = assoc.get_handlers(evt.EVT_C_STORE)  # (handler, args) of an intervention event
    if not bound or bound[0] is not _on_store:
        return

    def store(request: StoreRequest, transfer_syntax: str) -> tuple[int, str]:
        return _store(assoc, request, transfer_syntax, intake, guard)

    take_stores_of(assoc, store)


def _on_echo(event: Any, guard: AssociationGuard) -> int:
    return guard.refusal(event, DicomOperation.ECHO) or 0x0000


def _on_open(event: Any) -> None:
    answer_stores_quickly(event.assoc)
    tune_connection(event)


_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")
_DEFLATED = "1.2.840.10008.1.2.1.99"
# pynetdicom accepts the first syntax of OUR list that the peer proposed. Encoded syntaxes come
# first so a compressed instance is taken as the modality sent it, never transcoded by the peer.
# Deflate comes last: a peer offering it beside the uncompressed syntaxes (pynetdicom does by
# default) would otherwise have to deflate what it holds uncompressed, and we to inflate it.
PREFERRED_TRANSFER_SYNTAXES = [
    *(ts for ts in ALL_TRANSFER_SYNTAXES if ts not in (*_UNCOMPRESSED, _DEFLATED)),
    *_UNCOMPRESSED,
    _DEFLATED,
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
    # The limit holds across all receiving processes: each takes its share.
    processes = settings.dicom_receiver.count()
    ae.maximum_associations = -(-settings.dicom_max_associations // processes)
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


class _Contexts(list[PresentationContext]):
    """The supported contexts, handed to each association without copying them.

    pynetdicom deep-copies the server's contexts for every association: for every storage SOP
    class in every transfer syntax that rebuilt (and regex-checked) thousands of UIDs, about a
    fifth of a second of CPU per association, and copying the context objects alone still
    took 1-3 ms. The association only reads them: negotiation builds new contexts for its
    answer (``negotiate_as_acceptor``, ``negotiate_unrestricted``), and nothing of ours
    changes them after start (``tests/integration/test_scp_contexts.py`` holds pynetdicom to
    that). So each association gets its own list of the same context objects.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        return list(self)


def open_listener(host: str, port: int) -> socket.socket:
    """Bind and listen on the DICOM port; the socket every receiving process accepts from."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=128)
    # Several processes accept from this socket: one that loses the race must not block in
    # accept() (it would not notice shutdown), so accepting never waits.
    listener.setblocking(False)
    return listener


class Load:
    """Associations in progress per receiving process, shared by all of them.

    A process accepts the next association only while no other process has fewer in progress
    (or when the others left it waiting for 50 ms), so a burst of associations spreads over the
    processes instead of going to whichever process woke first.

    Parameters
    ----------
    counts
        A shared integer array (``multiprocessing.Array`` without lock), one slot per
        process, each written only by its process; None when only this process receives.
    slot
        This process's slot.
    """

    _PATIENCE = 0.05

    def __init__(self, counts: Any | None, slot: int) -> None:
        self.counts = counts
        self.slot = slot
        self._waiting_since: float | None = None
        self._changed_at = 0.0
        self._lock = threading.Lock()

    def my_turn(self) -> bool:
        """Return True when this process should accept the waiting association."""
        if self.counts is None:
            return True
        now = time.monotonic()
        if self.counts[self.slot] <= min(self.counts[:]):
            self._waiting_since = None
            return True
        self._waiting_since = self._waiting_since or now
        if now - self._waiting_since > self._PATIENCE:
            self._waiting_since = None
            return True
        return False

    def add(self, delta: int) -> None:
        """Count associations starting (+1) or ending (-1) in this process."""
        if self.counts is not None:
            with self._lock:
                self._changed_at = time.monotonic()
                self.counts[self.slot] = max(0, self.counts[self.slot] + delta)

    def resync(self, active: int) -> None:
        """Correct this process's count to the associations alive, once it has been steady.

        A just-accepted association is not alive yet, so only a count that nothing changed for
        a second is corrected (in case a connection ended without its close event).
        """
        if self.counts is None:
            return
        with self._lock:  # an association starting or ending now makes ``active`` stale
            if time.monotonic() - self._changed_at > 1.0:
                self.counts[self.slot] = active


class _SharedListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, accepting from a listening socket opened elsewhere."""

    listener: socket.socket
    load: Load
    _collected_at = 0.0

    def server_bind(self) -> None:
        """Serve the shared listener instead of binding a socket of our own."""
        if self.socket is not None:
            self.socket.close()
        self.socket = self.listener
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """Do nothing: the shared socket is already listening."""

    def server_close(self) -> None:
        """Close our descriptor only: shutdown() would stop the listener of every process."""
        if self.socket is not None:
            self.socket.close()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept when it is this process's turn; raise BlockingIOError to let another."""
        if not self.load.my_turn():
            time.sleep(0.002)
            raise BlockingIOError("a less busy receiving process takes this association")
        request = super().get_request()  # BlockingIOError when another process was quicker
        self.load.add(1)
        return request

    def service_actions(self) -> None:
        """Collect garbage at most once a minute, then correct our association count.

        pynetdicom's own housekeeping here runs a full ``gc.collect()`` every 60 turns of the
        accept loop, which turns at least once per connection in every receiving process (and
        again for each turn left to a less busy process). A full collection of this process
        takes a few hundred milliseconds, all threads stalled, so under a stream of short
        associations (C-GET, C-MOVE, C-ECHO) it stalled the transfers many times a minute.
        """
        now = time.monotonic()
        if now - self._collected_at > _GC_INTERVAL:
            self._collected_at = now
            gc.collect()  # what pynetdicom's housekeeping is for: cycles of ended associations
        self.load.resync(len(self.ae.active_associations))


def _on_close(event: Any, load: Load) -> None:
    load.add(-1)


def _serve(
    ae: AE, listener: socket.socket, handlers: list[Any], load: Load
) -> ThreadedAssociationServer:
    # The first full collection a minute after start, not at the first association: in a
    # worker that collection (a few hundred ms) stalled its acceptor while associations
    # arrived together, and the main process took them all after its 50 ms of patience.
    attributes = {"listener": listener, "load": load, "_collected_at": time.monotonic()}
    server_class = type("_Server", (_SharedListenerServer,), attributes)
    server = ae.make_server(
        listener.getsockname()[:2],
        evt_handlers=[*handlers, (evt.EVT_CONN_CLOSE, _on_close, [load])],
        contexts=_Contexts(ae.supported_contexts),
        server_class=server_class,
    )
    server.RequestHandlerClass = EventDrivenRequestHandler
    thread = threading.Thread(target=server.serve_forever, name="dicom-acceptor", daemon=True)
    thread.start()
    ae._servers.append(server)  # as start_server does: server.shutdown() removes it
    return server


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


ExtensionFactory = Callable[[Settings, Intake, AssociationGuard], Sequence[Extension]]
"""Builds a receiver's extensions over one process's intake and guard (picklable by name).

The guard tells the extension's handlers who is on an association (``guard.admission``) and
records their audit events (``guard.audit``).
"""


def _processes(settings: Settings, workers_can_serve: bool) -> int:
    # Extensions given as a list cannot be rebuilt in a worker: this process receives alone.
    # (The stores of our C-MOVEs find their job in any process: see sources.moves.)
    return settings.dicom_receiver.count() if workers_can_serve else 1


class Receiver:
    """A running C-STORE SCP bound to the configured port.

    With ``dicom_receiver.processes`` above 1 (0: one per core), worker processes serve the
    same port too (``scp_workers``), so receiving uses more than one core.
    With ``auth.dicom_tls`` a second listener speaks DICOM over TLS on its own port (or
    replaces the plain one); both admit only the peers ``auth.dicom_peers`` allows.

    Parameters
    ----------
    settings
        Port, AE title, limits, peers, TLS.
    intake
        Where received instances go.
    extensions
        Further services answered on the same AE (see :class:`Extension`): a list, or a
        module-level factory ``(settings, intake, guard) -> extensions`` that worker
        processes call again over their own intake (a list cannot travel to them, so it
        keeps one process).
    audit
        Where rejected associations, refused requests, user identity checks and DICOM
        events are recorded; worker processes open the same audit store themselves.
    listener
        Serve this listening socket instead of opening the configured port (a worker does);
        no further workers are started then.
    load
        With ``listener``: the association counts shared with the other processes.
    """

    def __init__(
        self,
        settings: Settings,
        intake: Intake,
        extensions: Sequence[Extension] | ExtensionFactory = (),
        audit: AuditTrail | None = None,
        *,
        listener: socket.socket | None = None,
        load: Load | None = None,
    ) -> None:
        self.settings = settings
        self.ae = build_ae(settings)
        self.guard = AssociationGuard(settings, audit, intake.db)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, _on_store, [intake, self.guard]),
            (evt.EVT_C_ECHO, _on_echo, [self.guard]),
            (evt.EVT_CONN_OPEN, _on_open),
            (evt.EVT_ESTABLISHED, _take_stores, [intake, self.guard]),
            (evt.EVT_REQUESTED, self.guard.on_requested),
            (evt.EVT_CONN_CLOSE, self.guard.on_closed),
        ]
        built = extensions(settings, intake, self.guard) if callable(extensions) else extensions
        for extension in built:
            for cx in extension.contexts:
                self.ae.add_supported_context(
                    cx.abstract_syntax, list(cx.transfer_syntaxes), cx.scu_role, cx.scp_role
                )
            handlers.extend(extension.handlers)
        self.workers: list[BaseProcess] = []
        self.tls_server: Any = None
        if listener is not None:  # a worker: serve the shared socket, start no others
            self.listener = listener
            self.server = _serve(self.ae, listener, handlers, load or Load(None, 0))
            return
        tls = settings.auth.dicom_tls
        if tls is not None:  # TLS associations are served by this process only
            self.tls_server = self._start_tls(tls.port, handlers, dicom_server_context(tls))
        if tls is not None and not tls.plain_listener:
            self.server = self.tls_server
            return
        self.listener = open_listener(settings.dicom_host, settings.dicom_port)
        factory = extensions if callable(extensions) else None
        processes = _processes(settings, factory is not None or not built)
        # No lock: each process writes only its own slot (``Load.add`` locks among its
        # threads), and a lock's semaphore would outlive a stopped receiver.
        counts = get_context("spawn").Array("i", processes, lock=False) if processes > 1 else None
        self.server = _serve(self.ae, self.listener, handlers, Load(counts, 0))
        if counts is not None:
            audit_url = audit.db.url if audit is not None else None
            self.workers = start_workers(
                self.listener, counts, settings, intake, factory, audit_url
            )

    def _start_tls(self, port: int, handlers: list[Any], context: Any) -> Any:
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
        """Stop accepting and close every association (the workers' and TLS ones too)."""
        stop_workers(self.workers)
        self.ae.shutdown()
