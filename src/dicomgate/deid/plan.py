"""Compile a profile once into a per-tag action table (the engine's hot-path lookup)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from dicomgate.deid.conformance import resolve_code
from dicomgate.deid.profile import BirthDateRule, Profile
from dicomgate.deid.table import (
    CURVE_ID,
    OVERLAY_COMMENTS_ID,
    OVERLAY_DATA_ID,
    PRIVATE_ID,
    Option,
    load_rows,
)

PATIENT_BIRTH_DATE = 0x00100030
PRIVATE = "P"
"""Pseudo action: the element is private; the safe list decides."""

_BIRTH_ACTIONS = {
    BirthDateRule.REMOVE: "Z",
    BirthDateRule.KEEP: "K",
    BirthDateRule.FIRST_DAY_OF_YEAR: "C",
    BirthDateRule.SHIFT: "C",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """The resolved action for every attribute a profile touches.

    Parameters
    ----------
    profile
        The profile the plan was compiled from.
    exact
        Tag -> one of ``X Z D K C U`` (combined codes already resolved).
    curve, overlay_data, overlay_comments
        Actions for the repeating-group patterns ``(50xx,xxxx)``, ``(60xx,3000)``,
        ``(60xx,4000)``.
    keep_private
        Whether private attributes on the safe list are kept (Retain Safe Private).
    """

    profile: Profile
    exact: Mapping[int, str]
    curve: str
    overlay_data: str
    overlay_comments: str
    keep_private: bool

    def action_for(self, tag: int) -> str | None:
        """Return the action for ``tag``; ``None`` means keep (recursing into sequences)."""
        action = self.exact.get(tag)
        if action is not None:
            return action
        group = tag >> 16
        if group & 1:
            return PRIVATE
        if 0x5000 <= group <= 0x50FF:
            return self.curve
        if 0x6000 <= group <= 0x60FF:
            element = tag & 0xFFFF
            if element == 0x4000:
                return self.overlay_comments
            # Without its Overlay Data an overlay plane is non-conformant: remove the group.
            return self.overlay_data if self.overlay_data == "X" else None
        return None

    def retains(self, option: Option) -> bool:
        """Return whether ``option`` is in effect."""
        return option in self.profile.effective_options


@lru_cache(maxsize=64)
def compile_plan(profile: Profile) -> Plan:
    """Resolve Table E.1-1, the options, the birth-date rule and the overrides for a profile."""
    options = profile.effective_options
    exact: dict[int, str] = {}
    patterns: dict[str, str] = {}
    for row in load_rows():
        tag = row.tag
        code = resolve_code(tag, row.action(options))
        if tag is None:
            patterns[row.row_id] = code
        else:
            exact[tag] = code
    exact[PATIENT_BIRTH_DATE] = _BIRTH_ACTIONS[profile.birth_date]
    exact.update(profile.overrides)
    return Plan(
        profile=profile,
        exact=exact,
        curve=patterns[CURVE_ID],
        overlay_data=patterns[OVERLAY_DATA_ID],
        overlay_comments=patterns[OVERLAY_COMMENTS_ID],
        keep_private=patterns[PRIVATE_ID] != "X",
    )
