"""UID helpers with no business logic."""

from __future__ import annotations

import re

from pydicom.uid import PYDICOM_IMPLEMENTATION_UID  # noqa: F401  (re-exported for callers)

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

# dicomgate's implementation class UID: a 2.25 UUID-derived root, fixed for this product.
IMPLEMENTATION_CLASS_UID = "2.25.233040426925614238460245497316946521117"
IMPLEMENTATION_VERSION_NAME = "DICOMGATE_010"


def is_valid_uid(value: object) -> bool:
    """Return True when ``value`` is a syntactically valid UID (PS3.5 9.1)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))
