"""A clock the tests move by hand: windows open and close, rate limits refill, without waiting."""

from __future__ import annotations

import datetime as dt


class FakeClock:
    """``now()`` starts at ``start``; ``sleep`` advances it (and records how long)."""

    def __init__(self, start: dt.datetime) -> None:
        self.current = start
        self.slept: list[float] = []
        self.script: list[dt.datetime] = []

    def now(self) -> dt.datetime:
        if self.script:  # scripted times, one per call: a window that closes mid-run
            self.current = self.script.pop(0)
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += dt.timedelta(seconds=max(0.0, seconds))

    def set(self, when: dt.datetime) -> None:
        self.current = when
