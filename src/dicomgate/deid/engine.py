"""The de-identification engine: ``apply(dataset, profile, keys) -> DeidResult``, pure.

``apply`` reads nothing but its arguments. It builds a *new* dataset in one walk over the
source (sequences recursed), sharing undecoded elements it keeps, so the source is left
untouched and elements that are removed are never decoded. The per-tag actions come from
:func:`dicomgate.deid.plan.compile_plan`, compiled once per profile.

Quarantine API: when an image may carry burned-in text, the profile does not allow it and no
pixel mask matches the device, ``apply`` returns a :class:`DeidResult` whose ``dataset`` is
``None`` and whose ``quarantine_reason`` says why. It never raises for data problems; it raises
:class:`~dicomgate.deid.errors.DeidError` subclasses only for unusable arguments.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicomgate.deid import dates
from dicomgate.deid.keys import DeidKeys, is_standard_uid, remap_uid
from dicomgate.deid.pixels import apply_mask, burned_in_risk, find_mask
from dicomgate.deid.plan import PATIENT_BIRTH_DATE, PRIVATE, Plan, compile_plan
from dicomgate.deid.private import kept_private_tags
from dicomgate.deid.profile import BirthDateRule, DateMode, Profile
from dicomgate.deid.report import Change, describe
from dicomgate.deid.stamp import stamp_identity, stamp_method
from dicomgate.deid.table import Option
from dicomgate.deid.values import (
    AnyElement,
    dummy,
    joined,
    new_element,
    raw_text,
    strings,
    vr_of,
)

GRAPHIC_ANNOTATION_SEQUENCE = 0x00700001
TEXT_OBJECT_SEQUENCE = 0x00700008
_SPACES = re.compile(r" {2,}")
_IDENTITY_TAGS = (0x00100010, 0x00100020, 0x00101000, 0x00101001, 0x00101005, 0x00080050)


@dataclass(frozen=True, slots=True)
class DeidResult:
    """What ``apply`` produced.

    Parameters
    ----------
    dataset
        The de-identified dataset, or ``None`` when the instance must be quarantined.
    changes
        One entry per attribute acted on (tag, action, short note; never a value).
    quarantine_reason
        Why the instance was not de-identified (burned-in text risk), else ``None``.
    """

    dataset: Dataset | None
    changes: tuple[Change, ...]
    quarantine_reason: str | None = None


@dataclass(slots=True)
class _Walk:
    plan: Plan
    keys: DeidKeys
    root: Dataset
    changes: list[Change] = field(default_factory=list)
    tokens: tuple[str, ...] | None = None

    def note(self, prefix: str, tag: int, action: str, note: str = "") -> None:
        self.changes.append(describe(prefix, tag, action, note))


_Action = Callable[[int, AnyElement, Dataset, _Walk, str], AnyElement | None]


def apply(dataset: Dataset, profile: Profile, keys: DeidKeys) -> DeidResult:
    """De-identify one instance.

    Parameters
    ----------
    dataset
        The source instance; it is not modified.
    profile
        The validated profile (see :func:`dicomgate.deid.profile.load_profile`).
    keys
        The project UID secret, the subject's pseudonym and date offset.

    Returns
    -------
    DeidResult
        The new dataset and change report, or a quarantine reason.
    """
    plan = compile_plan(profile)
    risk = burned_in_risk(dataset, profile.burned_in.modalities)
    mask = find_mask(profile.pixel_masks, dataset) if risk else None
    if risk and mask is None and not profile.burned_in.allow:
        return DeidResult(None, (), f"burned-in text suspected ({risk}); no pixel mask matches")
    walk = _Walk(plan, keys, dataset)
    out = _clean_dataset(dataset, walk, "")
    out.preamble = getattr(dataset, "preamble", None)
    out.file_meta = _clean_meta(dataset, walk)
    stamp_identity(out, keys, walk.changes)
    if mask is not None:
        walk.changes.extend(apply_mask(out, mask))
    elif risk:
        walk.note("", 0x00280301, "K", f"burned-in risk allowed by profile ({risk})")
    stamp_method(out, plan, cleaned_pixels=mask is not None)
    return DeidResult(out, tuple(walk.changes))


def _clean_dataset(src: Dataset, walk: _Walk, prefix: str) -> Dataset:
    # The elements are collected in a plain dict handed to Dataset(): one element at a time
    # through Dataset.__setitem__ costs more than the whole rest of the walk.
    elements: dict[BaseTag, AnyElement] = {}
    kept_private = kept_private_tags(src, walk.plan)
    action_for, get_item = walk.plan.action_for, src.get_item
    for tag in list(src.keys()):
        elem = get_item(tag)
        action = action_for(tag)
        if action is None or action == "K":
            elements[tag] = _keep(tag, elem, src, walk, prefix)
        elif action == PRIVATE:
            if tag in kept_private:
                elements[tag] = elem
            else:
                walk.note(prefix, tag, "X", "private")
        else:
            new = _ACTIONS[action](tag, elem, src, walk, prefix)
            if new is not None:
                elements[tag] = new
    out = Dataset(elements)
    implicit, little = src.original_encoding
    out.set_original_encoding(implicit, little, src.original_character_set)
    return out


def _clean_meta(src: Dataset, walk: _Walk) -> FileMetaDataset:
    meta = FileMetaDataset()
    source: Dataset = getattr(src, "file_meta", None) or Dataset()
    for tag in list(source.keys()):
        elem = source.get_item(tag)  # shallow: raw elements are immutable
        meta[tag] = elem if isinstance(elem, RawDataElement) else copy.copy(elem)
    uid = meta.get("MediaStorageSOPInstanceUID")
    if uid and not walk.plan.retains(Option.RETAIN_UIDS) and not is_standard_uid(str(uid)):
        meta.MediaStorageSOPInstanceUID = UID(remap_uid(walk.keys.uid_secret, str(uid)))
        walk.note("file_meta.", 0x00020003, "U")
    return meta


def _sequence(tag: int, src: Dataset, walk: _Walk, prefix: str) -> DataElement:
    seq: Sequence = src[tag].value
    name = describe(prefix, tag, "", "").path
    items = [_clean_dataset(item, walk, f"{name}[{i}].") for i, item in enumerate(seq)]
    return new_element(tag, "SQ", Sequence(items))


def _is_sequence(tag: int, elem: AnyElement) -> bool:
    if isinstance(elem, RawDataElement):
        # Implicit VR files leave sequences undecoded with no VR: ask the dictionary.
        return elem.VR == "SQ" or (elem.VR in (None, "UN") and vr_of(tag, elem) == "SQ")
    return isinstance(elem.value, Sequence)


def _keep(tag: int, elem: AnyElement, src: Dataset, walk: _Walk, prefix: str) -> AnyElement:
    if _is_sequence(tag, elem):
        return _sequence(tag, src, walk, prefix)
    # Raw elements are immutable and shared; decoded ones are copied so the source stays pure.
    return elem if isinstance(elem, RawDataElement) else copy.copy(elem)


def _remove(tag: int, elem: AnyElement, src: Dataset, walk: _Walk, prefix: str) -> None:
    walk.note(prefix, tag, "X")


def _empty(tag: int, elem: AnyElement, src: Dataset, walk: _Walk, prefix: str) -> AnyElement:
    walk.note(prefix, tag, "Z")
    vr = vr_of(tag, elem)
    if vr == "SQ":
        return new_element(tag, vr, None)
    return raw_text(tag, vr, "", src.original_encoding)


def _dummy(tag: int, elem: AnyElement, src: Dataset, walk: _Walk, prefix: str) -> AnyElement:
    vr = vr_of(tag, elem)
    if vr == "SQ":
        # No generic dummy item exists for a sequence: an empty one keeps the attribute.
        walk.note(prefix, tag, "D", "sequence emptied")
        return new_element(tag, "SQ", None)
    if vr == "UI":
        return _uid(tag, elem, src, walk, prefix)
    walk.note(prefix, tag, "D")
    return new_element(tag, vr, dummy(vr))


def _uid(tag: int, elem: AnyElement, src: Dataset, walk: _Walk, prefix: str) -> AnyElement:
    if _is_sequence(tag, elem):
        return _sequence(tag, src, walk, prefix)
    secret = walk.keys.uid_secret
    values = [v if not v or is_standard_uid(v) else remap_uid(secret, v) for v in strings(elem)]
    walk.note(prefix, tag, "U")
    return raw_text(tag, "UI", joined(values), src.original_encoding)


def _clean(tag: int, elem: AnyElement, src: Dataset, walk: _Walk, prefix: str) -> AnyElement:
    vr = vr_of(tag, elem)
    if tag == PATIENT_BIRTH_DATE:
        return _birth_date(tag, elem, walk, prefix)
    if vr in ("DA", "DT") and walk.plan.profile.dates == DateMode.SHIFT:
        return _shift(tag, elem, vr, walk, prefix)
    if vr == "SQ" or _is_sequence(tag, elem):
        walk.note(prefix, tag, "C", "sequence kept, items cleaned")
        return _clean_sequence(tag, src, walk, prefix)
    if vr in ("AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT"):
        return _clean_text(tag, elem, src, vr, walk, prefix)
    return _keep(tag, elem, src, walk, prefix)


def _clean_sequence(tag: int, src: Dataset, walk: _Walk, prefix: str) -> DataElement:
    new = _sequence(tag, src, walk, prefix)
    if tag == GRAPHIC_ANNOTATION_SEQUENCE:  # Clean Graphics: free text annotations go
        for item in new.value:
            if TEXT_OBJECT_SEQUENCE in item:
                del item[TEXT_OBJECT_SEQUENCE]
                walk.note(prefix, TEXT_OBJECT_SEQUENCE, "X", "clean graphics")
    return new


def _shift(tag: int, elem: AnyElement, vr: str, walk: _Walk, prefix: str) -> AnyElement:
    shift = dates.shift_da if vr == "DA" else dates.shift_dt
    days = walk.keys.date_offset_days
    values = [shift(v, days) for v in strings(elem)]
    if any(v is None for v in values):
        walk.note(prefix, tag, "Z", "unparseable date emptied")
        return new_element(tag, vr, None)
    walk.note(prefix, tag, "C", f"shifted {days:+d} days")
    return new_element(tag, vr, joined([v for v in values if v is not None]) or None)


def _birth_date(tag: int, elem: AnyElement, walk: _Walk, prefix: str) -> AnyElement:
    rule = walk.plan.profile.birth_date
    days = walk.keys.date_offset_days
    values = strings(elem)
    if rule == BirthDateRule.SHIFT:
        new = dates.shift_da(values[0], days) if values else None
    else:
        new = dates.first_day_of_year(values[0]) if values else None
    note = f"birth date rule {rule.value}" if new else "unparseable or empty birth date emptied"
    walk.note(prefix, tag, "C", note)
    return new_element(tag, "DA", new)


def _clean_text(
    tag: int, elem: AnyElement, src: Dataset, vr: str, walk: _Walk, prefix: str
) -> AnyElement:
    """Clean free text by deleting the subject's identifying tokens (names, IDs)."""
    if walk.tokens is None:
        walk.tokens = _identity_tokens(walk.root)
    text = joined(strings(elem))
    cleaned = text
    for token in walk.tokens:
        cleaned = _remove_token(cleaned, token)
    if cleaned == text:
        return _keep(tag, elem, src, walk, prefix)
    walk.note(prefix, tag, "C", "identifying tokens removed")
    return new_element(tag, vr, _SPACES.sub(" ", cleaned).strip() or None)


def _remove_token(text: str, token: str) -> str:
    lowered, needle = text.lower(), token.lower()
    while (at := lowered.find(needle)) >= 0:
        text = text[:at] + text[at + len(needle) :]
        lowered = lowered[:at] + lowered[at + len(needle) :]
    return text


def _identity_tokens(root: Dataset) -> tuple[str, ...]:
    tokens: set[str] = set()
    for tag in _IDENTITY_TAGS:
        if tag in root:
            for value in strings(root.get_item(tag)):
                tokens.update(t for t in value.replace("^", " ").split() if len(t) > 2)
                tokens.add(value.strip())
    return tuple(sorted((t for t in tokens if len(t) > 2), key=len, reverse=True))


_ACTIONS: dict[str, _Action] = {
    "X": _remove,
    "Z": _empty,
    "D": _dummy,
    "U": _uid,
    "C": _clean,
}
