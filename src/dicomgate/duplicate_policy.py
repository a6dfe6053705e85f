"""``DuplicatePolicy``, on its own: intake needs it, and spawned workers import intake.

``dicomgate.settings`` loads every configuration model (and pydantic-settings, YAML); a
worker that only receives instances would pay that at each start for one enum.
"""

from __future__ import annotations

import enum


class DuplicatePolicy(enum.StrEnum):
    """What to do when an instance arrives again with different content under the same UID."""

    KEEP_FIRST = "keep_first"
    REPLACE = "replace"
    REJECT = "reject"
