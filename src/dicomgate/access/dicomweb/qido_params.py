"""Parse a QIDO-RS query string into a validated :class:`QidoQuery` (PS3.18 8.3.4).

Every value that cannot be matched is refused here with a message naming the parameter, so
nothing malformed reaches SQL (where values are bound parameters anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dicomgate.access.dicomweb.attributes import (
    BY_KEYWORD,
    Attribute,
    Level,
    is_dicom_attribute,
    lookup,
)
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import InvalidInputError

MAX_OFFSET = 2**31 - 1
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_MAX_VALUE = {"DA": 17, "TM": 27, "UI": 64 * 100, "IS": 12, "US": 6}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True, slots=True)
class Match:
    """One matching key: the attribute and its parsed constraint."""

    attribute: Attribute
    kind: str  # "equal", "wildcard", "range", "uids", "universal"
    values: tuple[str | None, ...]


@dataclass(slots=True)
class QidoQuery:
    """A validated QIDO-RS query at one level."""

    level: Level
    matches: list[Match] = field(default_factory=list)
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False


def _integer(value: str, name: str, high: int) -> int:
    if not value.isdigit() or len(value) > 12 or int(value) > high:
        raise InvalidInputError(f"{name} must be an integer from 0 to {high}")
    return int(value)


def _range(attr: Attribute, value: str, pattern: re.Pattern[str]) -> Match:
    low, sep, high = value.partition("-")
    for part in (low, high):
        if part and not pattern.match(part):
            raise InvalidInputError(f"{attr.keyword} is not a valid {attr.vr} value or range")
    if not sep:
        return Match(attr, "equal", (value,))
    if not low and not high:
        raise InvalidInputError(f"{attr.keyword}: a range needs at least one end")
    if low and high and low > high:
        raise InvalidInputError(f"{attr.keyword}: the range starts after it ends")
    return Match(attr, "range", (low or None, high or None))


def _uids(attr: Attribute, value: str) -> Match:
    uids = tuple(u for u in re.split(r"[,\\]", value) if u)
    if not uids or not all(is_valid_uid(u) for u in uids):
        raise InvalidInputError(f"{attr.keyword} must be a UID or a comma-separated UID list")
    return Match(attr, "uids", uids)


def parse_match(attr: Attribute, value: str) -> Match:
    """Return the constraint ``value`` puts on ``attr``.

    Raises
    ------
    InvalidInputError
        When the value does not suit the attribute's VR.
    """
    if value == "*":
        return Match(attr, "universal", ())
    if len(value) > _MAX_VALUE.get(attr.vr, 324) or _CONTROL.search(value):
        raise InvalidInputError(f"{attr.keyword} is not a valid value")
    if attr.vr == "DA":
        return _range(attr, value, _DATE)
    if attr.vr == "TM":
        return _range(attr, value, _TIME)
    if attr.vr == "UI":
        return _uids(attr, value)
    if attr.vr in ("IS", "US"):
        if attr.column is None:
            raise InvalidInputError(f"matching on {attr.keyword} is not supported")
        return Match(attr, "equal", (str(_integer(value, attr.keyword, 2**31 - 1)),))
    if "*" in value or "?" in value:
        return Match(attr, "wildcard", (value,))
    return Match(attr, "equal", (value,))


def _include(query: QidoQuery, value: str) -> None:
    for name in (v.strip() for v in value.split(",")):
        if name == "all":
            query.include_all = True
        elif (attr := lookup(name)) is not None:
            query.include.add(attr.keyword)
        elif not is_dicom_attribute(name):
            raise InvalidInputError(f"includefield: {name[:40]!r} is not a DICOM attribute")


def _key(query: QidoQuery, name: str, value: str, max_limit: int) -> None:
    lowered = name.lower()
    if lowered == "includefield":
        _include(query, value)
    elif lowered == "limit":
        query.limit = min(_integer(value, "limit", MAX_OFFSET), max_limit)
    elif lowered == "offset":
        query.offset = _integer(value, "offset", MAX_OFFSET)
    elif lowered == "fuzzymatching":
        if value not in ("true", "false"):
            raise InvalidInputError("fuzzymatching must be true or false")
        query.fuzzy = value == "true"
    else:
        _match_key(query, name, value)


def _match_key(query: QidoQuery, name: str, value: str) -> None:
    attr = lookup(name)
    if attr is None:
        if is_dicom_attribute(name):
            raise InvalidInputError(f"matching on {name[:40]} is not supported")
        raise InvalidInputError(f"{name[:40]!r} is not a query parameter or DICOM attribute")
    if attr.level > query.level:
        raise InvalidInputError(f"{attr.keyword} is below the {query.level.name.lower()} level")
    if value == "":  # a return key: include it, no constraint
        query.include.add(attr.keyword)
        return
    query.matches.append(parse_match(attr, value))
    query.include.add(attr.keyword)


def parse_query(
    level: Level, items: list[tuple[str, str]], max_limit: int
) -> tuple[QidoQuery, bool]:
    """Parse the query string pairs of a search at ``level``.

    Returns
    -------
    tuple
        The query, and whether ``limit`` was cut to ``max_limit`` (the caller warns).

    Raises
    ------
    InvalidInputError
        For an unknown key, a value that does not suit its attribute, or a bad limit/offset.
    """
    query = QidoQuery(level)
    capped = False
    for name, value in items:
        _key(query, name, value, max_limit)
        if name.lower() == "limit" and int(value) > max_limit:
            capped = True
    return query, capped


def keywords_to_return(query: QidoQuery, defaults: tuple[str, ...]) -> list[str]:
    """Return the keywords each result carries: the defaults, match keys and includefields."""
    if query.include_all:
        return [a for a in BY_KEYWORD if BY_KEYWORD[a].level <= query.level]
    return list(dict.fromkeys([*defaults, *sorted(query.include)]))
