"""The change report: one entry per attribute acted on, naming the tag, never the value."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydicom.datadict import keyword_for_tag


@dataclass(frozen=True, slots=True)
class Change:
    """One action taken on one attribute.

    Parameters
    ----------
    path
        Where the attribute sits, e.g. ``ReferencedSeriesSequence[0].SeriesInstanceUID``.
    tag
        The tag as ``(gggg,eeee)``.
    action
        ``X`` removed, ``Z`` emptied, ``D`` dummy, ``U`` UID remapped, ``C`` cleaned,
        ``K`` kept (only reported when notable), ``P`` pseudonym, ``A`` added, ``M`` masked.
    note
        A short explanation without PHI.
    """

    path: str
    tag: str
    action: str
    note: str = ""


def tag_text(tag: int) -> str:
    """Return ``(gggg,eeee)`` for an int tag."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@lru_cache(maxsize=4096)
def _names(tag: int) -> tuple[str, str]:
    text = tag_text(tag)
    return keyword_for_tag(tag) or text, text


def describe(prefix: str, tag: int, action: str, note: str) -> Change:
    """Build a :class:`Change` for ``tag`` under the sequence path ``prefix``."""
    name, text = _names(tag)
    return Change(path=f"{prefix}{name}", tag=text, action=action, note=note)
