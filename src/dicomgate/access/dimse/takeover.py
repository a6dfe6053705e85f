"""Drive a retrieve requester's association on the handler's thread while sub-operations run.

pynetdicom moves every message of an association through its reactor thread, which polls the
socket and sleeps a millisecond between idle loops; a C-GET sends each sub-operation's C-STORE
and waits for its response that way, two or three sleeps per instance. For the length of the
sub-operations a :class:`Takeover` keeps the reactor off the socket (it is told no data is
waiting) and writes and reads there itself: the C-STOREs of a C-GET (over a
:class:`~dicomgate.access.dimse.wire.StoreChannel`), the pending C-GET/C-MOVE responses
(encoded here, sent with the next write). A C-CANCEL-RQ read on the way is handed to
pynetdicom's cancel bookkeeping, so ``event.is_cancelled`` works as before. The first message
of another kind (the final response) gives the socket back before pynetdicom sends it.

Only plain TCP sockets are taken over; TLS associations keep pynetdicom's path.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

from pynetdicom.dimse_primitives import C_CANCEL
from pynetdicom.transport import AssociationSocket

from dicomgate.access.dimse.wire import (
    C_CANCEL_RQ,
    C_GET_RSP,
    StoreChannel,
    Wire,
    pending_command,
    us_value,
)
from dicomgate.dicom.readiness import wait_readable

_HOLD = "_dicomgate_hold"
_HOLD_WAIT = 2.0
_PENDING = (0xFF00, 0xFF01)


class _HeldSocket(AssociationSocket):
    """pynetdicom's socket that tells the reactor nothing is waiting while it is held.

    ``held`` also keeps an idle reactor (``dicom.reactor``) from watching the socket.
    """

    held = True

    @property
    def ready(self) -> bool:
        """Return False while held (the reactor does not read); else pynetdicom's answer."""
        hold = self.__dict__.get(_HOLD)
        if hold is not None:
            hold.set()  # the reactor is past any read it began before the hold
            return False
        return bool(AssociationSocket.ready.fget(self))  # type: ignore[attr-defined]


def _takeable(sock: Any) -> bool:
    raw = getattr(sock, "socket", None)
    plain = isinstance(raw, socket.socket) and not isinstance(raw, ssl.SSLSocket)
    return type(sock) is AssociationSocket and plain


class Takeover:
    """The requester's association, driven from the handler's thread.

    Parameters
    ----------
    assoc
        pynetdicom's association the C-GET or C-MOVE request came on.
    field
        The command field of the pending responses (C-GET-RSP or C-MOVE-RSP).
    """

    def __init__(self, assoc: Any, field: int) -> None:
        self.assoc = assoc
        self.field = field
        self.wire: Wire | None = None
        self._sock: Any = None

    def start(self) -> bool:
        """Hold the reactor off the socket; return False (nothing changed) when not possible."""
        sock = self.assoc.dul.socket
        if not _takeable(sock):
            return False
        hold = threading.Event()
        sock.__dict__[_HOLD] = hold
        sock.__class__ = _HeldSocket
        self._sock = sock
        wake = getattr(self.assoc.dul, "wake", None)
        if wake is not None:  # an idle reactor looks at ``ready`` again only after a tick
            wake()
        if not hold.wait(_HOLD_WAIT) or not self.assoc.is_established:
            self.stop()
            return False
        self.wire = Wire(sock.socket, int(self.assoc.requestor.maximum_length or 0))
        self.assoc.dimse.send_msg = self._send_msg  # an instance attribute: undone by stop()
        return True

    def channel(self) -> StoreChannel:
        """Return a C-STORE sender over the requester's association (C-GET sub-operations)."""
        assert self.wire is not None
        contexts = [cx for cx in self.assoc.accepted_contexts if cx.as_scu]
        return _GuardedChannel(self, self.wire, contexts, self._cancelled)

    def stop(self) -> None:
        """Send what is pending and give the socket back to pynetdicom's reactor."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        wire, self.wire = self.wire, None
        self.assoc.__dict__.pop("send_c_store", None)
        self.assoc.dimse.__dict__.pop("send_msg", None)
        try:
            if wire is not None:
                wire.flush()
        except OSError:
            pass  # the reactor finds the connection closed and ends the association
        finally:
            sock.__dict__.pop(_HOLD, None)
            sock.__class__ = AssociationSocket
            self.assoc.dul._idle_timer.restart()  # it saw no traffic while held
            wake = getattr(self.assoc.dul, "wake", None)
            if wake is not None:  # it waits on its wake-up alone while the socket is held
                wake()

    def _send_msg(self, primitive: Any, context_id: int) -> None:
        wire = self.wire
        if wire is None or primitive.Status not in _PENDING or primitive.Identifier is not None:
            self.stop()
            self.assoc.dimse.send_msg(primitive, context_id)
            return
        counts = (
            primitive.NumberOfRemainingSuboperations or 0,
            primitive.NumberOfCompletedSuboperations or 0,
            primitive.NumberOfFailedSuboperations or 0,
            primitive.NumberOfWarningSuboperations or 0,
        )
        command = pending_command(
            self.field,
            str(primitive.AffectedSOPClassUID),
            int(primitive.MessageIDBeingRespondedTo),
            counts,
        )
        wire.pending += b"".join(wire.pdus(context_id, memoryview(command), command=True))
        if self.field != C_GET_RSP:  # a C-MOVE's sub-operations go elsewhere: send it now
            self._poll_cancel(wire)
            self._flush(wire)

    def _flush(self, wire: Wire) -> None:
        try:
            wire.flush()
        except OSError:
            self.stop()

    def _poll_cancel(self, wire: Wire) -> None:
        """Read what the requester sent meanwhile (only a C-CANCEL-RQ is expected)."""
        try:
            while wait_readable([wire.sock], 0):
                values = wire.read_command()
                if us_value(values, 0x0100) != C_CANCEL_RQ:
                    raise OSError("the requester sent another request during a retrieve")
                self._cancelled(us_value(values, 0x0120))
        except OSError:
            self.stop()  # the reactor takes it from here (closed or broken connection)

    def _cancelled(self, msg_id: int | None) -> None:
        if msg_id is None:
            return
        cancel = C_CANCEL()
        cancel.MessageIDBeingRespondedTo = msg_id
        self.assoc.dimse.cancel_req[msg_id] = cancel


class _GuardedChannel(StoreChannel):
    """A channel that gives the socket back to pynetdicom when the connection fails."""

    def __init__(self, takeover: Takeover, *args: Any) -> None:
        super().__init__(*args)
        self.takeover = takeover

    def send_c_store(self, *args: Any, **kwargs: Any) -> Any:
        """Send one C-STORE (see :meth:`StoreChannel.send_c_store`)."""
        try:
            return super().send_c_store(*args, **kwargs)
        except OSError:
            self.takeover.stop()
            raise
