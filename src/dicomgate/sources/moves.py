"""C-MOVE requests in flight, so that our receiver attributes their C-STOREs to the job.

A node performing our C-MOVE opens its own association to our receiver; each C-STORE carries
the Move Originator AE title and Message ID of our request (PS3.7 9.1.1.1). The retrieve
registers ``(our AE, message id) -> ActiveMove`` before sending; the receiver looks it up.
Registration is per process: a receiver in another process stores the instances under its own
origin, and the retrieve still finds them in the index when it reconciles.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import ReceiveResult


@dataclass
class ActiveMove:
    """One C-MOVE in flight: the origin its instances get, and what arrived so far."""

    origin: Origin
    results: dict[str, ReceiveResult] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self, result: ReceiveResult) -> None:
        """Remember the intake result of one instance that arrived for this move."""
        if result.sop_instance_uid:
            with self._lock:
                self.results[result.sop_instance_uid] = result

    def arrived(self) -> dict[str, ReceiveResult]:
        """Return a copy of the results collected so far."""
        with self._lock:
            return dict(self.results)


class MoveRegistry:
    """The moves this process has in flight, keyed by originator AE title and message id."""

    def __init__(self) -> None:
        self._moves: dict[tuple[str, int], ActiveMove] = {}
        self._next = 1
        self._lock = threading.Lock()

    def _allocate(self, ae_title: str) -> int:
        for _ in range(0xFFFF):
            msg_id, self._next = self._next, self._next % 0xFFFF + 1
            if (ae_title, msg_id) not in self._moves:
                return msg_id
        raise RuntimeError("65535 C-MOVE requests in flight")

    @contextmanager
    def register(self, ae_title: str, origin: Origin) -> Iterator[tuple[int, ActiveMove]]:
        """Reserve a message id for one C-MOVE; yield it with the move's collector."""
        move = ActiveMove(origin)
        with self._lock:
            msg_id = self._allocate(ae_title.strip())
            self._moves[(ae_title.strip(), msg_id)] = move
        try:
            yield msg_id, move
        finally:
            with self._lock:
                self._moves.pop((ae_title.strip(), msg_id), None)

    def lookup(self, ae_title: str | None, msg_id: int | None) -> ActiveMove | None:
        """Return the move a C-STORE belongs to, from its Move Originator fields."""
        if not ae_title or msg_id is None:
            return None
        with self._lock:
            return self._moves.get((ae_title.strip(), int(msg_id)))


active_moves = MoveRegistry()
