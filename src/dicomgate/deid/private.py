"""Private attributes: which ones the Retain Safe Private option keeps at one dataset level."""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicomgate.deid.plan import Plan
from dicomgate.deid.values import joined, strings


def private_tags(ds: Dataset) -> list[int]:
    """Return the private tags of one dataset level, sorted (creators before their blocks)."""
    # Iterating a Dataset yields decoded elements; keys() gives tags without decoding.
    return sorted(t for t in ds.keys() if (t >> 16) & 1)  # noqa: SIM118


def kept_private_tags(ds: Dataset, plan: Plan) -> frozenset[int]:
    """Return the private tags to keep: safe-listed data elements and the creators they use.

    Parameters
    ----------
    ds
        One dataset level (sequence items are handled when the walk reaches them).
    plan
        The compiled profile; nothing is kept unless Retain Safe Private is in effect.

    Returns
    -------
    frozenset of int
        The tags to keep.
    """
    if not plan.keep_private:
        return frozenset()
    safe = plan.profile.safe_private_set
    creators: dict[tuple[int, int], str] = {}
    kept: set[int] = set()
    for tag in private_tags(ds):
        group, element = tag >> 16, tag & 0xFFFF
        if 0x10 <= element <= 0xFF:
            creators[(group, element)] = joined(strings(ds.get_item(tag))).strip()
            continue
        creator = creators.get((group, element >> 8))
        if creator is not None and (group, creator, element & 0xFF) in safe:
            kept.update((tag, (group << 16) | (element >> 8)))
    return frozenset(kept)
