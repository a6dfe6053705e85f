"""De-identification: PS3.15 profiles as data, keyed UIDs, dates, pseudonyms, identity vault.

``apply(dataset, profile, keys) -> DeidResult`` is pure; everything it needs is an argument.
"""

from dicomgate.deid.engine import DeidResult, apply
from dicomgate.deid.errors import (
    DeidError,
    KeysError,
    ProfileError,
    PseudonymError,
    VaultError,
    VaultKeyError,
)
from dicomgate.deid.keys import DeidKeys, remap_uid
from dicomgate.deid.pixels import burned_in_risk
from dicomgate.deid.profile import Profile, load_profile
from dicomgate.deid.references import check_references
from dicomgate.deid.report import Change
from dicomgate.deid.table import TABLE_EDITION, Option
from dicomgate.deid.verify import Violation, verify_dataset

__all__ = [
    "TABLE_EDITION",
    "Change",
    "DeidError",
    "DeidKeys",
    "DeidResult",
    "KeysError",
    "Option",
    "Profile",
    "ProfileError",
    "PseudonymError",
    "VaultError",
    "VaultKeyError",
    "Violation",
    "apply",
    "burned_in_risk",
    "check_references",
    "load_profile",
    "remap_uid",
    "verify_dataset",
]
