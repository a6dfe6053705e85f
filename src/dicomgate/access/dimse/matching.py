"""Turn one key of a query into a SQL condition (PS3.4 C.2.2.2 attribute matching).

Single value (exact), wildcard (``*``, ``?``), range (dates and times), list of UIDs; an empty
value is universal matching (no condition). Every value reaches SQL as a bound parameter.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from dicomgate.access.api_queries import parse_date_range
from dicomgate.access.dimse.attributes import Kind
from dicomgate.errors import InvalidInputError

_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_NUMBER = re.compile(r"^[+-]?\d{1,10}$")


def wildcard(session: Session, column: Any, value: str) -> ColumnElement[bool]:
    """Match ``column`` against a DICOM wildcard pattern, case-sensitively."""
    if session.get_bind().dialect.name == "sqlite":
        # GLOB is case-sensitive like DICOM matching; only '[' needs escaping.
        condition: ColumnElement[bool] = column.op("GLOB")(value.replace("[", "[[]"))
        return condition
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")  # type: ignore[no-any-return]


def _text(session: Session, column: Any, value: str) -> ColumnElement[bool]:
    if "*" in value or "?" in value:
        return wildcard(session, column, value)
    return column == value  # type: ignore[no-any-return]


def _uids(column: Any, value: str) -> ColumnElement[bool]:
    uids = [uid.strip() for uid in value.split("\\") if uid.strip()]
    if len(uids) == 1:
        return column == uids[0]  # type: ignore[no-any-return]
    return column.in_(uids)  # type: ignore[no-any-return]


def _range(column: Any, low: str | None, high: str | None) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = column != ""
    if low is not None:
        condition = condition & (column >= low)
    if high is not None:
        condition = condition & (column <= high)
    return condition


def _time_bound(value: str, name: str) -> str:
    if not _TIME.match(value):
        raise InvalidInputError(f"{name} must be HH[MM[SS[.FFFFFF]]] or a range of those")
    return value


def _times(column: Any, value: str, name: str) -> ColumnElement[bool]:
    start, dash, end = value.partition("-")
    if not dash:
        start = end = value
    if not start and not end:
        raise InvalidInputError(f"{name} must be a time or a time range")
    low = _time_bound(start, name) if start else None
    # '~' sorts after digits and '.': "1015" as an upper bound includes 10:15:59.999.
    high = _time_bound(end, name) + "~" if end else None
    return _range(column, low, high)


def _number(column: Any, value: str, name: str) -> ColumnElement[bool]:
    if not _NUMBER.match(value):
        raise InvalidInputError(f"{name} must be an integer")
    return column == int(value)  # type: ignore[no-any-return]


def condition(
    session: Session, column: Any, kind: Kind, value: str, name: str
) -> ColumnElement[bool] | None:
    """Return the condition for matching ``column`` against ``value`` (None: universal).

    Raises
    ------
    InvalidInputError
        When a date, time or number is not valid; the message names the attribute.
    """
    if value in ("", "*"):
        return None
    if kind is Kind.UID:
        return _uids(column, value)
    if kind is Kind.DATE:
        low, high = parse_date_range(value, name)
        return _range(column, low, high)
    if kind is Kind.TIME:
        return _times(column, value, name)
    if kind is Kind.NUMBER:
        return _number(column, value, name)
    return _text(session, column, value)
