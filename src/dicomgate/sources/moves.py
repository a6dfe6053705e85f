"""C-MOVE requests in flight, so that every receiving process attributes their C-STOREs to the job.

A node performing our C-MOVE opens its own association to our receiver; each C-STORE carries
the Move Originator AE title and Message ID of our request (PS3.7 9.1.1.1). Before sending, the
retrieve claims a message id in the index (``pacs_moves_in_flight``: ``(our AE, message id) ->
origin``), so the receiving process that takes the association, whichever it is, finds the
job's origin there. The process that sent the move also keeps it in memory, with a collector
of what its own receiver did with each instance.

Message ids are reused (16 bits), so a store must never take the origin of another move with
the same id. Two rules make sure it cannot, though a receiving process caches what it looked
up for :data:`CACHE_SECONDS`:

- a claimed id is not claimed again until :data:`QUARANTINE_SECONDS` (far longer than the
  cache) after its move ended, so a cached origin names the only move that could have sent the
  store;
- every store of a move arrives before the node's final C-MOVE response (PS3.4 C.4.2.3), and
  the move ends only after that response, so only a node breaking the protocol could send a
  store for an ended move; within the cache time it takes the origin of the move it names.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dicomgate.archive.models import utcnow
from dicomgate.db import Database
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import ReceiveResult
from dicomgate.sources.pacs.models import MoveInFlight

CACHE_SECONDS = 1.0
QUARANTINE_SECONDS = 120.0
# A move that never ended (its process was killed) gives its id back after a day.
_ABANDONED = dt.timedelta(days=1)
_MAX_ID = 0xFFFF
_CLAIM_ATTEMPTS = 5


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


def origin_to_json(origin: Origin) -> dict[str, Any]:
    """Return ``origin`` as a JSON object (unset fields left out)."""
    return {key: value for key, value in asdict(origin).items() if value is not None}


def origin_from_json(data: dict[str, Any]) -> Origin:
    """Return the origin :func:`origin_to_json` wrote."""
    return Origin(**{**data, "kind": OriginKind(data["kind"])})


def _purge(session: Session, ae_title: str) -> None:
    now = utcnow()
    quarantined = now - dt.timedelta(seconds=QUARANTINE_SECONDS)
    session.execute(
        delete(MoveInFlight).where(
            MoveInFlight.originator_ae == ae_title,
            (MoveInFlight.ended_at < quarantined) | (MoveInFlight.started_at < now - _ABANDONED),
        )
    )


def _free_id(session: Session, ae_title: str) -> int:
    """Return the id after the last one claimed that no kept row holds (ids rotate)."""
    rows = session.execute(
        select(MoveInFlight.pk, MoveInFlight.message_id).where(
            MoveInFlight.originator_ae == ae_title
        )
    ).all()
    taken = {int(msg_id) for _pk, msg_id in rows}
    last = max(rows, default=(0, 0))[1]
    for step in range(1, _MAX_ID + 1):
        candidate = (last + step - 1) % _MAX_ID + 1
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"{_MAX_ID} C-MOVE requests in flight or quarantined")


def _claim_once(db: Database, ae_title: str, origin: Origin) -> tuple[int, int]:
    with db.unit_of_work() as session:
        _purge(session, ae_title)
        row = MoveInFlight(
            originator_ae=ae_title,
            message_id=_free_id(session, ae_title),
            origin=origin_to_json(origin),
        )
        session.add(row)
        session.flush()
        return int(row.pk), int(row.message_id)


def claim(db: Database, ae_title: str, origin: Origin) -> tuple[int, int]:
    """Record a move in flight under a free message id; return ``(row pk, message id)``."""
    for _ in range(_CLAIM_ATTEMPTS - 1):
        try:
            return _claim_once(db, ae_title, origin)
        except IntegrityError:  # another process claimed the same id at the same time
            continue
    return _claim_once(db, ae_title, origin)


def release(db: Database, pk: int) -> None:
    """Mark a move ended; its id stays quarantined (see the module docstring)."""
    with db.unit_of_work() as session:
        session.execute(update(MoveInFlight).where(MoveInFlight.pk == pk).values(ended_at=utcnow()))


def find_in_flight(db: Database, ae_title: str, msg_id: int) -> Origin | None:
    """Return the origin of the move in flight under ``(ae_title, msg_id)``, if there is one."""
    query = select(MoveInFlight.origin).where(
        MoveInFlight.originator_ae == ae_title,
        MoveInFlight.message_id == msg_id,
        MoveInFlight.ended_at.is_(None),
    )
    with db.reader() as session:
        found = session.scalar(query)
    return origin_from_json(found) if found is not None else None


class MoveRegistry:
    """Moves in flight: this process's own, and a short cache of what the index said."""

    def __init__(self) -> None:
        self._moves: dict[tuple[str, int], ActiveMove] = {}
        self._cache: dict[tuple[str, int], tuple[float, Origin]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def register(
        self, db: Database, ae_title: str, origin: Origin
    ) -> Iterator[tuple[int, ActiveMove]]:
        """Claim a message id for one C-MOVE; yield it with the move's collector."""
        ae_title = ae_title.strip()
        move = ActiveMove(origin)
        pk, msg_id = claim(db, ae_title, origin)
        with self._lock:
            self._moves[(ae_title, msg_id)] = move
        try:
            yield msg_id, move
        finally:
            with self._lock:
                self._moves.pop((ae_title, msg_id), None)
            release(db, pk)

    def lookup(self, db: Database, ae_title: str | None, msg_id: int | None) -> ActiveMove | None:
        """Return the move a C-STORE belongs to, from its Move Originator fields.

        A move another process sent comes back with a collector of its own, which nobody
        reads: that process finds the instances in the index.
        """
        if not ae_title or msg_id is None:
            return None
        key = (ae_title.strip(), int(msg_id))
        with self._lock:
            move = self._moves.get(key)
            cached = self._cache.get(key)
        if move is not None:
            return move
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return ActiveMove(cached[1])
        origin = find_in_flight(db, *key)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < CACHE_SECONDS}
            if origin is not None:
                self._cache[key] = (now, origin)
        return ActiveMove(origin) if origin is not None else None


active_moves = MoveRegistry()
