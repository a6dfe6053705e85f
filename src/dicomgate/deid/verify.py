"""Self-check: list every attribute of a de-identified dataset that violates its profile."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomgate.deid.keys import is_standard_uid
from dicomgate.deid.plan import PRIVATE, Plan, compile_plan
from dicomgate.deid.private import kept_private_tags
from dicomgate.deid.profile import Profile
from dicomgate.deid.report import describe
from dicomgate.deid.values import strings

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
REMAPPED_ROOT = "2.25."


@dataclass(frozen=True, slots=True)
class Violation:
    """One attribute that breaks the profile.

    Parameters
    ----------
    file
        The file it was found in ("" for an in-memory dataset).
    path
        Where the attribute sits (sequence path and keyword).
    tag
        ``(gggg,eeee)``.
    rule
        Short rule id: ``removed-present``, ``empty-not-empty``, ``uid-not-remapped``,
        ``private-not-safe``, ``identity-not-removed``, ``name-not-pseudonym``, ``unreadable``.
    """

    file: str
    path: str
    tag: str
    rule: str


def verify_dataset(ds: Dataset, profile: Profile, file: str = "") -> list[Violation]:
    """Return every violation of ``profile`` in a (supposedly) de-identified dataset."""
    plan = compile_plan(profile)
    found = [_violation(file, prefix, tag, rule) for prefix, tag, rule in _walk(ds, plan, "")]
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        found.append(_violation(file, "", 0x00120062, "identity-not-removed"))
    pattern = re.compile(profile.pseudonym_pattern)
    for tag in (PATIENT_NAME, PATIENT_ID):
        if tag in ds and not all(pattern.match(v) for v in strings(ds.get_item(tag))):
            found.append(_violation(file, "", tag, "name-not-pseudonym"))
    return found


def _violation(file: str, prefix: str, tag: int, rule: str) -> Violation:
    change = describe(prefix, tag, "", "")
    return Violation(file=file, path=change.path, tag=change.tag, rule=rule)


def _walk(ds: Dataset, plan: Plan, prefix: str) -> Iterator[tuple[str, int, str]]:
    kept_private = kept_private_tags(ds, plan)
    for tag in list(ds.keys()):
        action = plan.action_for(tag)
        if action == PRIVATE and tag not in kept_private:
            yield prefix, tag, "private-not-safe"
            continue
        elem = ds[tag]
        rule = _check_value(tag, elem.VR, strings(elem), action, prefix)
        if rule is not None:
            yield prefix, tag, rule
        if elem.VR == "SQ":
            name = describe(prefix, tag, "", "").path
            for i, item in enumerate(elem.value):
                yield from _walk(item, plan, f"{name}[{i}].")
            if action == "Z" and len(elem.value):
                yield prefix, tag, "empty-not-empty"


def _check_value(
    tag: int, vr: str, values: list[str], action: str | None, prefix: str
) -> str | None:
    if action == "X":
        return "removed-present"
    if action == "Z" and any(values) and not (prefix == "" and tag in (PATIENT_NAME, PATIENT_ID)):
        return "empty-not-empty"
    remappable = action == "U" or (action == "D" and vr == "UI")
    if remappable and any(_looks_original(v) for v in values):
        return "uid-not-remapped"
    return None


def _looks_original(uid: str) -> bool:
    return bool(uid) and not uid.startswith(REMAPPED_ROOT) and not is_standard_uid(uid)
