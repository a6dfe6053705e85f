"""Politeness towards a remote node: time windows, a request rate limit, an association cap.

Everything takes an injected :class:`Clock`, so tests close and open a window, or fill the rate
limit, without waiting. Limits are per process; several worker processes each apply them.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol
from zoneinfo import ZoneInfo

from dicomgate.dicom.nodes import RemoteNode, TimeWindow


class Clock(Protocol):
    """The time source of the politeness rules."""

    def now(self) -> dt.datetime:
        """Return the current time (timezone-aware)."""

    def monotonic(self) -> float:
        """Return seconds from a monotonic source."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """Return the current time in UTC."""
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        time.sleep(max(0.0, seconds))


def _open_in(window: TimeWindow, local: dt.datetime) -> bool:
    """Return True when ``local`` (naive local time) falls inside ``window``."""
    moment = local.time()
    if window.start < window.end:
        return window.starts_on(local.date()) and window.start <= moment < window.end
    if moment >= window.start:
        return window.starts_on(local.date())
    if moment < window.end:  # the tail of a window that opened yesterday
        return window.starts_on(local.date() - dt.timedelta(days=1))
    return False


def is_open(windows: list[TimeWindow], now: dt.datetime, tz: str = "UTC") -> bool:
    """Return True when traffic is allowed at ``now`` (no windows: always)."""
    if not windows:
        return True
    local = now.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    return any(_open_in(window, local) for window in windows)


def next_opening(windows: list[TimeWindow], now: dt.datetime, tz: str = "UTC") -> dt.datetime:
    """Return the first moment at or after ``now`` when a window is open (UTC, aware).

    Raises
    ------
    ValueError
        When no window ever opens (days list excludes every day cannot happen after validation,
        so this only guards against an empty result over a fortnight).
    """
    if is_open(windows, now, tz):
        return now
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    candidates = []
    for offset in range(15):
        day = local.date() + dt.timedelta(days=offset)
        for window in windows:
            if window.starts_on(day):
                opening = dt.datetime.combine(day, window.start, tzinfo=zone)
                if opening > local:
                    candidates.append(opening)
    if not candidates:
        raise ValueError("no time window opens within two weeks")
    return min(candidates).astimezone(dt.UTC)


class RateLimiter:
    """At most ``per_minute`` requests in any sliding 60-second span."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Return how long the next request must wait (0 when it may go now)."""
        with self._lock:
            now = self.clock.monotonic()
            while self._sent and now - self._sent[0] >= 60.0:
                self._sent.popleft()
            if len(self._sent) < self.per_minute:
                return 0.0
            return 60.0 - (now - self._sent[0])

    def acquire(self) -> None:
        """Wait until a request may go, then count it."""
        while (wait := self.delay()) > 0:
            self.clock.sleep(wait)
        with self._lock:
            self._sent.append(self.clock.monotonic())


class Politeness:
    """The rules for one node: its windows, its rate limit, its association cap."""

    def __init__(self, node: RemoteNode, clock: Clock) -> None:
        self.node = node
        self.clock = clock
        self.limiter = RateLimiter(node.max_requests_per_minute, clock)
        self._associations = threading.BoundedSemaphore(node.max_associations)

    def is_open(self) -> bool:
        """Return True when the node's window is open now."""
        return is_open(self.node.windows, self.clock.now(), self.node.timezone)

    def next_opening(self) -> dt.datetime:
        """Return when the node's window next opens (now if open)."""
        return next_opening(self.node.windows, self.clock.now(), self.node.timezone)

    @contextmanager
    def association(self) -> Iterator[None]:
        """Hold one of the node's association slots for the block."""
        with self._associations:
            yield


class PolitenessRegistry:
    """One :class:`Politeness` per node name, shared by everything in the process."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._rules: dict[str, Politeness] = {}
        self._lock = threading.Lock()

    def for_node(self, node: RemoteNode) -> Politeness:
        """Return the rules for ``node`` (created on first use)."""
        with self._lock:
            rules = self._rules.get(node.name)
            if rules is None or rules.node != node:
                rules = self._rules[node.name] = Politeness(node, self.clock)
            return rules
