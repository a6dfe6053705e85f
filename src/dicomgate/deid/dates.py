"""Date arithmetic for DA and DT values; anything unparseable returns ``None``.

Callers replace an unparseable date with an empty value and note it in the change report,
so that real-world junk ("2020", "20201301", "unknown") never stops de-identification.
"""

from __future__ import annotations

import datetime as dt


def parse_da(value: str) -> dt.date | None:
    """Return the date of a conformant ``YYYYMMDD`` value, else ``None``."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def shift_da(value: str, days: int) -> str | None:
    """Shift a DA value by ``days``; ``None`` when it is not a valid date or leaves 0001-9999."""
    date = parse_da(value)
    if date is None:
        return None
    try:
        return (date + dt.timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return None


def shift_dt(value: str, days: int) -> str | None:
    """Shift the date part of a DT value, keeping its time, fraction and UTC offset.

    A DT holding less than a full date (``YYYY`` or ``YYYYMM``) cannot be shifted by days
    without inventing precision, so it is treated as unparseable.
    """
    text = value.strip()
    shifted = shift_da(text[:8], days)
    rest = text[8:]
    if shifted is None or not all(c.isdigit() or c in ".+-" for c in rest):
        return None
    return shifted + rest


def first_day_of_year(value: str) -> str | None:
    """Reduce a DA value to the first of January of its year (the Shanoir birth-date rule)."""
    date = parse_da(value)
    return None if date is None else f"{date.year:04d}0101"
