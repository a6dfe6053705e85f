"""Remote DICOM nodes (PACS) as configured: address, retrieve method, politeness.

``PacsSettings`` is the one nested block of ``Settings`` (key ``pacs``). Every limit here applies
to all outbound traffic to that node: echo, find, move and get.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NODE_NAME = r"^[A-Za-z0-9_-]+$"


class RetrieveMethod(enum.StrEnum):
    """How instances come back from a node."""

    C_MOVE = "c-move"
    C_GET = "c-get"


def parse_clock_time(value: Any) -> dt.time:
    """Return a time of day from ``HH``, ``HH:MM``, ``HH:MM:SS`` or YAML's sexagesimal int.

    YAML 1.1 reads an unquoted ``20:00`` as the integer 1200 (base 60): such an int is taken as
    minutes since midnight.
    """
    if isinstance(value, dt.time):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a time of day: {value!r}")
    if isinstance(value, int):
        if not 0 <= value < 24 * 60:
            raise ValueError(f"not a time of day: {value!r}")
        return dt.time(value // 60, value % 60)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) <= 2:
            text = f"{int(text):02d}:00"
        try:
            return dt.time.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"not a time of day (HH:MM): {value!r}")


class TimeWindow(BaseModel):
    """A daily window in local time; ``end`` before ``start`` crosses midnight.

    ``days`` are the days on which the window *starts* (a 20:00-08:00 window on ``fri`` stays open
    until Saturday 08:00). Empty means every day.
    """

    model_config = ConfigDict(extra="forbid")

    start: dt.time
    end: dt.time
    days: list[str] = Field(default_factory=list)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> dt.time:
        return parse_clock_time(value)

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        days = [day.strip().lower()[:3] for day in value]
        for day in days:
            if day not in _DAYS:
                raise ValueError(f"unknown day {day!r}: use mon, tue, wed, thu, fri, sat, sun")
        return days

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: leave windows empty for always open")
        return self

    def starts_on(self, day: dt.date) -> bool:
        """Return True when the window opens on ``day``."""
        return not self.days or _DAYS[day.weekday()] in self.days


class RemoteNode(BaseModel):
    """One remote DICOM node and how politely to treat it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NODE_NAME, max_length=64)
    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: int = Field(ge=1, le=65535)
    retrieve_method: RetrieveMethod = RetrieveMethod.C_MOVE
    # C-MOVE destination: the AE title of our receiver as the node knows it (default: ours).
    move_destination: str | None = Field(default=None, max_length=16)
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_associations: int = Field(default=2, ge=1, le=64)
    max_requests_per_minute: int = Field(default=60, ge=1)
    windows: list[TimeWindow] = Field(default_factory=list)
    timezone: str = "UTC"

    @field_validator("ae_title", "move_destination")
    @classmethod
    def _ae(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\\" in value or not value.isascii()):
            raise ValueError(f"invalid AE title {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class PacsSettings(BaseModel):
    """The ``pacs`` block of the settings: remote nodes and the retrieve policy."""

    model_config = ConfigDict(extra="forbid")

    nodes: list[RemoteNode] = Field(default_factory=list)
    # A failing series is retried this many times, waiting backoff * 2**n seconds, then skipped.
    series_attempts: int = Field(default=3, ge=1, le=20)
    series_backoff: float = Field(default=5.0, ge=0)
    # Seconds to wait for C-MOVE sub-operations still in flight after the final response.
    move_settle_timeout: float = Field(default=10.0, ge=0)
    timeout: float = Field(default=60.0, gt=0)

    @field_validator("nodes")
    @classmethod
    def _unique(cls, nodes: list[RemoteNode]) -> list[RemoteNode]:
        names = [node.name for node in nodes]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"node name {name!r} is used twice")
        return nodes

    def node(self, name: str) -> RemoteNode:
        """Return the node called ``name``.

        Raises
        ------
        NotFoundError
            When no node has that name.
        """
        from dicomgate.errors import NotFoundError

        for node in self.nodes:
            if node.name == name:
                return node
        raise NotFoundError(f"no remote node named {name!r}")
