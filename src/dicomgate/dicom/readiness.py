"""Waiting for sockets with ``poll()``, which has no ceiling on descriptor numbers.

``select()`` cannot watch a descriptor numbered 1024 or above (``FD_SETSIZE``): Python raises
``ValueError``. A receiver that holds many files, database connections and associations
reaches such numbers, and pynetdicom's ``AssociationSocket.ready`` took that error for a
closed connection: every association accepted or requested from then on was dropped while
it negotiated ("Peer aborted Association" for the peer). Importing this module (``reactor``
does, and every association we accept or request runs through it) makes ``ready`` ask
``poll()`` instead.
"""

from __future__ import annotations

import select
import ssl
from typing import Any

from pynetdicom.transport import AssociationSocket

# What select() counts as readable: data, the peer's close, an error (the read reports it).
_READABLE = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def wait_readable(sockets: list[Any], timeout: float) -> list[Any]:
    """Return those of ``sockets`` that are readable within ``timeout`` seconds.

    Like ``select.select(sockets, [], [], timeout)[0]``, for any descriptor number.

    Raises
    ------
    OSError
        A socket was closed (it has no descriptor any more).
    """
    poller = select.poll()
    by_fd: dict[int, Any] = {}
    for sock in sockets:
        fd = sock.fileno()
        if fd < 0:
            raise OSError(f"{sock!r} is closed")
        poller.register(fd, _READABLE)
        by_fd[fd] = sock
    events = poller.poll(timeout * 1000)
    if any(event & select.POLLNVAL for _fd, event in events):
        raise OSError("a socket was closed while it was watched")
    return [by_fd[fd] for fd, event in events if event & _READABLE]


def _ready(self: AssociationSocket) -> bool:
    """Return True when the association's socket has data (or news) to read.

    pynetdicom's own property, with ``poll()`` in place of ``select()``; a socket that
    cannot be watched any more is a closed connection (Evt17), as there.
    """
    sock = self.socket
    if sock is None or self._is_connected is False:
        return False
    try:
        ready = bool(wait_readable([sock], 0))
    except OSError:
        self.event_queue.put("Evt17")
        return False
    if isinstance(sock, ssl.SSLSocket):  # it may hold decrypted bytes poll() cannot see
        return ready or bool(sock.pending())
    return ready


AssociationSocket.ready = property(_ready)  # type: ignore[method-assign,assignment]
