"""Event-driven reactors for the receiver's associations, instead of pynetdicom's polling.

pynetdicom runs two threads per association that poll: the DUL thread sleeps 1 ms whenever
nothing happened, the association thread sleeps 1 ms on every loop. A C-STORE then waits for
a sleeping thread twice (request up, response down), and every idle association wakes 2,000
times a second for nothing; on a loaded machine each wake-up waits for a core and for the GIL.
Here the DUL thread blocks in ``select()`` on the peer's socket and a wake-up socket that
``send_pdu()`` writes to, and the association thread blocks on an event the DUL sets after
each state-machine action; both still look at pynetdicom's timers and kill flags every
``TICK`` seconds. Only the acceptor associations of the plain listener run these reactors
(``scp._serve``) and the plain associations we request (``RequestorAE``: a C-GET's stores
arrive on them) run these reactors; the TLS listener and TLS requests keep pynetdicom's.

The two reactor loops are pynetdicom 3.0's, with only their sleeps replaced.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pynetdicom import AE, _config
from pynetdicom import evt as pynetdicom_evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import RequestHandler

import dicomgate.dicom.uid_checks  # noqa: F401  (remembers UID checks: association set-up)
from dicomgate.dicom.fast_response import ResponseAssembler
from dicomgate.dicom.fast_store import ProtocolError, StoreAssembler, StoreRequest, p_data_pdu
from dicomgate.dicom.known_requests import KNOWN_REQUESTS
from dicomgate.dicom.readiness import wait_readable
from dicomgate.dicom.store_response import command_pdata

log = logging.getLogger(__name__)

# Set here, where every association we accept or request gets its reactor: identifiers (names,
# IDs) must never reach the logs, and pynetdicom's standard logging handlers would watch the
# PDUs and messages, which turns the C-STORE fast path off.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
_config.LOG_HANDLER_LEVEL = "none"
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

TICK = 0.05
"""The longest either reactor blocks before looking at its timers and flags again (s)."""

_SEND_DIRECTLY = ("Sta6", "Sta8")  # data transfer; release requested by the peer
_P_DATA_TF = 0x04
_A_ASSOCIATE_RQ = b"\x01"
_EVT_ASSOCIATE_RQ = "Evt6"  # A-ASSOCIATE-RQ PDU received on the transport connection
_LOCAL_ABORT = "Evt15"  # A-ABORT request primitive from the local user
_CLOSING = ("Sta1", "Sta13")  # idle; awaiting the transport connection to close
_PDU_TYPES = range(0x01, 0x08)
_PREALLOCATED = 4 << 20
# Handlers bound to these see pynetdicom's PDUs and messages, which the fast path never builds.
_WATCHED_EVENTS = (
    pynetdicom_evt.EVT_DATA_RECV,
    pynetdicom_evt.EVT_PDU_RECV,
    pynetdicom_evt.EVT_DIMSE_RECV,
    pynetdicom_evt.EVT_PDU_SENT,
    pynetdicom_evt.EVT_DIMSE_SENT,
)


def recv_exactly(
    sock: socket.socket, length: int, head: bytes | bytearray = b""
) -> bytearray | None:
    """Return ``head`` followed by exactly ``length`` bytes read from ``sock``; None if it closed.

    pynetdicom reads 4 KiB per ``recv`` into a growing buffer and copies the PDU twice more;
    a 512 KiB instance then costs 128 system calls and four copies. Here the bytes land where
    they stay. Only the first ``_PREALLOCATED`` bytes are reserved before they arrive, so a
    peer that announces a huge PDU and sends nothing costs no memory.
    """
    buffer = bytearray(len(head) + min(length, _PREALLOCATED))
    buffer[: len(head)] = head
    done, end = len(head), len(head) + length
    while done < end:
        if done == len(buffer):
            buffer.extend(bytes(min(end - done, _PREALLOCATED)))
        view = memoryview(buffer)[done:]
        try:
            count = sock.recv_into(view)
        finally:
            view.release()  # the buffer may have to grow
        if not count:
            return None
        done += count
    return buffer


class EventDrivenDUL(DULServiceProvider):
    """A DUL whose reactor sleeps until the peer or the association has something for it."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.handed_up = threading.Event()
        self._machine = threading.Lock()
        self._stores: StoreAssembler | None = None
        self._responses: ResponseAssembler | None = None
        self.acknowledge_reads = False

    def send_pdu(self, primitive: Any) -> None:
        """Send a P-DATA to the peer from the calling thread; queue anything else.

        A P-DATA in the data-transfer states is only encoded and sent (PS3.8 DT-1, AR-7), so
        the association's thread sends its responses itself instead of waking the reactor
        and waiting for it; the lock keeps the state machine still meanwhile, and anything
        already queued goes first.
        """
        if isinstance(primitive, P_DATA):
            with self._machine:
                direct = self.to_provider_queue.empty() and (
                    self.state_machine.current_state in _SEND_DIRECTLY
                )
                if direct:
                    self._send(P_DATA_TF(primitive))
                    return
        super().send_pdu(primitive)
        self._poke()

    @property
    def takes_stores(self) -> bool:
        """Return True when a store assembler takes this association's C-STOREs."""
        return self._stores is not None

    def take_stores(self, assembler: StoreAssembler) -> bool:
        """Let ``assembler`` take this association's C-STOREs (see ``fast_store``).

        Returns False (and changes nothing) when a handler watches pynetdicom's PDUs or
        messages, which the fast path never builds.
        """
        if any(self.assoc.get_handlers(event) for event in _WATCHED_EVENTS):
            return False
        self._stores = assembler
        return True

    def take_responses(self) -> bool:
        """Decode the responses to our finds, gets and moves here (see ``fast_response``).

        Returns False (and changes nothing) when a handler watches pynetdicom's PDUs or
        messages, or when this is not a requested association.
        """
        if not self.assoc.is_requestor or any(
            self.assoc.get_handlers(event) for event in _WATCHED_EVENTS
        ):
            return False
        self._responses = ResponseAssembler()
        return True

    def _read_pdu_data(self) -> None:
        """Read one PDU; a P-DATA-TF goes to the store or response assembler first."""
        taker = self._taker()
        if taker is None:
            super()._read_pdu_data()
            return
        pdu = self._read_pdu()
        if pdu is None:
            return
        if pdu[0] == _P_DATA_TF:
            body = memoryview(pdu)[6:]
            for assembler in taker:
                try:
                    taken = assembler.take(body)
                except ProtocolError as exc:
                    log.warning("aborting association %s: %s", self.assoc.name, exc)
                    self.event_queue.put("Evt19")  # invalid PDU: A-ABORT (PS3.8 AA-8)
                    return
                if taken is None:
                    continue
                done, rest = taken
                self._deliver(assembler, done)
                if rest is None:
                    return
                pdu = bytearray(struct.pack(">BBL", _P_DATA_TF, 0, len(rest))) + rest
                break
        else:  # an abort or release cuts a message short: pynetdicom's now
            for assembler in taker:
                assembler.reset()
        self._decode_for_pynetdicom(pdu)

    def _taker(self) -> list[StoreAssembler | ResponseAssembler] | None:
        """Return the assemblers to offer the next PDU to, in turn; None for pynetdicom's path.

        One that is in the middle of a message gets it alone; otherwise both may look, but
        only between messages, when pynetdicom holds nothing of one.
        """
        assemblers = [a for a in (self._stores, self._responses) if a is not None]
        busy = [a for a in assemblers if a.assembling]
        if busy:
            return busy
        return assemblers if assemblers and self._idle_between_messages() else None

    def _deliver(
        self, assembler: StoreAssembler | ResponseAssembler, done: list[tuple[int, Any]]
    ) -> None:
        if isinstance(assembler, StoreAssembler):
            for context_id, response in done:
                self._send_response(context_id, response)
        else:
            for item in done:
                self.assoc.dimse.msg_queue.put(item)  # where pynetdicom's DT-2 puts it

    def _idle_between_messages(self) -> bool:
        """Return True when pynetdicom holds no message, part of one, or an unhandled event.

        A requestor's decoded messages are the answers its caller waits for (a C-GET's
        pending responses, one after each of its C-STOREs): they never wait on a C-STORE.
        """
        dimse = self.assoc.dimse
        return (
            self.state_machine.current_state == "Sta6"
            and dimse.message is None
            and self.event_queue.empty()
            and (self.assoc.is_requestor or dimse.msg_queue.empty())
        )

    def _read_pdu(self) -> bytearray | None:
        """Return one whole PDU, or None after queueing the event pynetdicom would have."""
        assert self.socket is not None and self.socket.socket is not None  # it was readable
        raw = self.socket.socket
        try:
            head = self._recv(raw, 6)
            if head is None:
                self.event_queue.put("Evt17")  # the connection closed
                return None
            pdu_type, _, length = struct.unpack(">BBL", head)
            if pdu_type not in _PDU_TYPES:
                self.event_queue.put("Evt19")  # unrecognised PDU
                return None
            pdu = self._recv(raw, length, head)
        except (OSError, TimeoutError):
            pdu = None
        if pdu is None:
            self.event_queue.put("Evt17")
        return pdu

    def _recv(
        self, raw: socket.socket, length: int, head: bytes | bytearray = b""
    ) -> bytearray | None:
        data = recv_exactly(raw, length, head)
        if self.acknowledge_reads:
            _quick_ack(raw)  # as ``tune_connection``'s reads do: see there
        return data

    def _decode_pdu(self, bytestream: bytearray) -> tuple[Any, str]:
        """Decode a PDU as pynetdicom does; an A-ASSOCIATE-RQ seen before is not decoded again."""
        if bytestream[:1] != _A_ASSOCIATE_RQ:
            return super()._decode_pdu(bytestream)
        data = bytes(bytestream)
        pynetdicom_evt.trigger(self.assoc, pynetdicom_evt.EVT_DATA_RECV, {"data": data})
        pdu = KNOWN_REQUESTS.decode(data)
        pynetdicom_evt.trigger(self.assoc, pynetdicom_evt.EVT_PDU_RECV, {"pdu": pdu})
        return pdu, _EVT_ASSOCIATE_RQ

    def _decode_for_pynetdicom(self, pdu: bytearray) -> None:
        """Hand a PDU to pynetdicom's state machine, as its own reader does."""
        try:
            decoded, event = self._decode_pdu(pdu)
        except Exception:
            log.warning("association %s: a PDU could not be decoded", self.assoc.name)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(decoded)

    def _send_response(self, context_id: int, command_set: bytes) -> None:
        """Send a C-STORE-RSP now, or queue it behind what is queued already."""
        with self._machine:
            if self.to_provider_queue.empty() and self.state_machine.current_state == "Sta6":
                if self.socket is not None:
                    self.socket.send(p_data_pdu(context_id, command_set))
                return
        self.send_pdu(command_pdata(context_id, command_set))

    def kill_dul(self) -> None:
        """Stop the reactor (woken so it stops now)."""
        super().kill_dul()
        self._poke()

    def wake(self) -> None:
        """Have the reactor look at its socket and queues now, not at its next tick."""
        self._poke()

    def _poke(self) -> None:
        # A full wake-up buffer means a wake-up is already pending; a closed one, no reactor.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _drain(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError once empty
            while self._wake_r.recv(4096):
                pass

    def _idle_wait(self) -> None:
        """Block until the socket is readable, a primitive is queued or a tick passed."""
        assoc_socket = self.socket
        raw = assoc_socket.socket if assoc_socket is not None else None
        if raw is None or raw.fileno() < 0:
            time.sleep(self._run_loop_delay)  # closing: pynetdicom's pace
            return
        if not self.to_provider_queue.empty() or not self.event_queue.empty():
            return
        if isinstance(raw, ssl.SSLSocket) and raw.pending():
            return
        # A socket another thread reads for now (``held``, see ``access.dimse.takeover``) is
        # not watched: its data would wake this loop again and again until that thread read
        # it, and each turn took the GIL from the thread that was about to (a third of a
        # C-GET's serving process); giving the socket back wakes this loop.
        watched = [self._wake_r] if getattr(assoc_socket, "held", False) else [raw, self._wake_r]
        with contextlib.suppress(OSError):  # closed meanwhile: next loop sees it
            if self._wake_r in wait_readable(watched, TICK):
                self._drain()  # only then: a read of an empty socket costs a call and a raise

    def run_reactor(self) -> None:
        """Run pynetdicom's DUL loop, waking the association after each action."""
        try:
            self._react()
        finally:
            self.handed_up.set()  # the association notices that the DUL stopped
            self._wake_r.close()
            self._wake_w.close()

    def _react(self) -> None:
        self._idle_timer.start()
        sleep = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if sleep:
                self._idle_wait()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception:
                self._abort_hard()
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                sleep = True
                continue
            with self._machine:
                self._act(event)
            self.handed_up.set()
            sleep = False

    def _act(self, event: str) -> None:
        """Run the state machine's action for ``event``.

        An A-ABORT asked for locally (Evt15, e.g. by a server shutting down) after the peer
        already closed or aborted (Sta13, Sta1) is moot: pynetdicom raises InvalidEventError
        for it and the reactor thread dies with a traceback; the association ends either way.
        """
        state = self.state_machine.current_state
        if event == _LOCAL_ABORT and state in _CLOSING:
            return
        self.state_machine.do_action(event)

    def _abort_hard(self) -> None:
        """Send an A-ABORT bypassing the state machine, as pynetdicom does on an error."""
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        if self.socket is not None:
            self.socket.send(abort_pdu.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


class EventDrivenAssociation(Association):
    """An acceptor association whose reactor waits for its DUL instead of polling it."""

    dul: EventDrivenDUL
    _after_response: list[Callable[[], None]]

    def use_event_driven_dul(self) -> None:
        """Replace the (not yet started) DUL by an event-driven one on the same socket."""
        self._after_response = []
        old = self.dul
        dul = EventDrivenDUL(self)
        dul.socket = old.socket
        # The socket already queued the connection's event (Evt5) on the old DUL.
        dul.event_queue = old.event_queue
        dul._idle_timer.timeout = old._idle_timer.timeout
        dul.artim_timer.timeout = old.artim_timer.timeout
        self.dul = dul

    def after_response(self, action: Callable[[], None]) -> None:
        """Run ``action`` on this association's thread once the request being served is answered.

        pynetdicom marks its reactor paused while a handler runs, so a thread a handler starts
        may send on the association at once and overtake the handler's own response (a
        storage commitment report whose command arrived before the N-ACTION response was
        garbled for the peer). Such a thread is started from here instead.
        """
        self._after_response.append(action)

    def _answered(self) -> None:
        actions, self._after_response = self._after_response, []
        for action in actions:
            try:
                action()
            except Exception:  # the association goes on; what failed is the action's
                log.exception("association %s: an after-response action failed", self.name)

    def _wait_for_dul(self) -> None:
        signal = self.dul.handed_up
        signal.clear()
        if self.dimse.msg_queue.empty() and self.dul.to_user_queue.empty():
            signal.wait(TICK)

    def _run_reactor(self) -> None:
        """Run pynetdicom's acceptor loop, waiting for the DUL instead of sleeping 1 ms."""
        self._is_paused = False
        while not self._kill:
            self._wait_for_dul()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            if not self._reactor_checkpoint.is_set():
                continue  # paused again after we passed: see keep_responses_for_the_caller
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, context_id)  # type: ignore[arg-type]
                self._answered()
            if self._stop_reacting():
                return

    def _stop_reacting(self) -> bool:
        """Handle a release, an abort, a dead DUL or the network timeout; True when done."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            _trigger(self, "EVT_RELEASED")
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # EVT_ACSE_RECV fires for subscribers
            self.is_aborted = True
            self.is_established = False
            _trigger(self, "EVT_ABORTED")
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            self._network_timed_out()
            return True
        return False

    def _network_timed_out(self) -> None:
        if self.network_timeout_response == "A-RELEASE":
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self.release()
            self._is_paused = False
        else:
            self.abort()
        self.kill()


def take_stores_of(
    assoc: Association,
    store: Callable[[StoreRequest, str], tuple[int, str]],
    *,
    scp_role_only: bool = False,
) -> bool:
    """Let ``assoc``'s DUL take its C-STOREs itself (``dicom.fast_store``); True when it does.

    ``store`` gets each request with its context's transfer syntax and returns the response
    status and comment. With ``scp_role_only`` (a requestor's C-GET) only the contexts where
    the peer granted us the SCP role take stores. A TLS association (pynetdicom's own DUL)
    keeps pynetdicom's path.
    """
    dul = assoc.dul
    if not isinstance(dul, EventDrivenDUL):
        return False
    syntaxes = {
        int(cx.context_id): str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if cx.context_id is not None and (cx.as_scp or not scp_role_only)
    }

    def handler(request: StoreRequest) -> tuple[int, str]:
        return store(request, syntaxes[request.context_id])

    return dul.take_stores(StoreAssembler(handler, frozenset(syntaxes)))


def take_responses_of(assoc: Association) -> bool:
    """Let a requested association's DUL decode the responses to its requests (see there)."""
    dul = assoc.dul
    return isinstance(dul, EventDrivenDUL) and dul.take_responses()


def _trigger(assoc: Association, name: str) -> None:
    from pynetdicom import evt

    evt.trigger(assoc, getattr(evt, name), {})


class RequestorAE(AE):
    """An AE whose requested associations keep their responses for the caller.

    Plain (non-TLS) ones also run the event-driven DUL: a requesting association's own
    thread idles while the caller's thread sends and waits on the DIMSE queue, which blocks
    without polling.
    """

    def _create_socket(self, assoc: Association, address: Any, tls_args: Any) -> Any:
        """Give ``assoc`` an event-driven DUL before its socket (which posts events to it)."""
        if tls_args is None:
            assoc.dul = EventDrivenDUL(assoc)
        keep_responses_for_the_caller(assoc)
        return super()._create_socket(assoc, address, tls_args)


def keep_responses_for_the_caller(assoc: Association) -> None:
    """Stop ``assoc``'s reactor thread from taking a message while a caller has paused it.

    pynetdicom pauses a requestor's reactor before each ``send_*`` by clearing a checkpoint
    and waiting for a flag the reactor sets just before it waits at that checkpoint, not once
    it waits there. A reactor thread preempted after passing the checkpoint (a loaded
    machine) then takes the response the caller waits for off the DIMSE queue, logs an
    "unexpected service message", and the caller's find, move or get times out and fails.
    The reactor clears that flag before it looks at the queue, so looking at the checkpoint
    again there is enough: if the caller cleared it, the queue is the caller's; if not, the
    caller is still waiting for the flag and has sent nothing whose answer could be taken.
    """
    take = assoc.dimse.get_msg
    checkpoint = assoc._reactor_checkpoint

    def get_msg(block: bool = False) -> Any:
        if threading.current_thread() is assoc and not checkpoint.is_set():
            return None, None
        return take(block)

    assoc.dimse.get_msg = get_msg  # type: ignore[method-assign]


class EventDrivenRequestHandler(RequestHandler):
    """pynetdicom's request handler, creating event-driven acceptor associations."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        assoc.__class__ = EventDrivenAssociation  # before its threads start: nothing ran yet
        assoc.use_event_driven_dul()  # type: ignore[attr-defined]
        return assoc


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)  # Linux only


def _quick_ack(raw: socket.socket) -> None:
    # A closed peer makes setsockopt fail; the next read reports it properly.
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


def _read_and_acknowledge(assoc_socket: Any, raw: socket.socket) -> None:
    """Read straight into one buffer per call, and re-arm TCP_QUICKACK after every read.

    pynetdicom reads in 4 KiB pieces appended to a growing buffer (128 calls for a 512 KiB
    PDU). A sender with Nagle on (dcmtk's default, many modalities) holds its next small
    segment until our ACK arrives; Linux delays that ACK by up to 40 ms unless quick-ACK mode
    is re-armed after each read, and leaves quick-ACK mode again whenever we send.
    """

    def recv(nr_bytes: int) -> bytearray:
        data = bytearray(nr_bytes)
        view = memoryview(data)
        got = 0
        while got < nr_bytes:
            read = raw.recv_into(view[got:])
            if not read:  # the peer closed: return what came, pynetdicom reports it
                break
            got += read
        view.release()
        if _TCP_QUICKACK:
            _quick_ack(raw)
        return data if got == nr_bytes else data[:got]

    send = assoc_socket.send

    def send_and_rearm(bytestream: bytes) -> None:
        send(bytestream)
        if _TCP_QUICKACK:
            _quick_ack(raw)

    assoc_socket.recv = recv
    assoc_socket.send = send_and_rearm


def tune_connection(event: Any) -> None:
    """Set up a new association's socket to answer promptly (an ``EVT_CONN_OPEN`` handler).

    Without TCP_NODELAY our small responses would wait on the sender's delayed ACKs.
    """
    assoc_socket = event.assoc.dul.socket
    raw = assoc_socket.socket if assoc_socket is not None else None
    if raw is None:
        return
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not isinstance(raw, ssl.SSLSocket):  # TLS reads through its own buffer
        _read_and_acknowledge(assoc_socket, raw)
        if isinstance(event.assoc.dul, EventDrivenDUL):
            event.assoc.dul.acknowledge_reads = _TCP_QUICKACK != 0
    elif _TCP_QUICKACK:
        _acknowledge_after_reads(assoc_socket, raw)


def _acknowledge_after_reads(assoc_socket: Any, raw: socket.socket) -> None:
    read = assoc_socket.recv

    def recv(nr_bytes: int) -> bytearray:
        data: bytearray = read(nr_bytes)
        _quick_ack(raw)
        return data

    assoc_socket.recv = recv
