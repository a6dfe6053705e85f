"""Reference check: every UID an RT object (or a frame-of-reference list) points to resolves.

Usable before and after de-identification: with consistent UID remapping the same references
resolve in both cases. Only references that a session must satisfy are checked (structure
set -> frame of reference, series and contour images; plan -> structure set; dose -> plan);
generic Referenced Image Sequences are not, since they often point at localisers that are
legitimately absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomgate.deid.values import strings

REFERENCED_FRAME_OF_REFERENCE_SEQUENCE = 0x30060010
RT_REFERENCED_SERIES_SEQUENCE = 0x30060014
CONTOUR_IMAGE_SEQUENCE = 0x30060016
REFERENCED_STRUCTURE_SET_SEQUENCE = 0x300C0060
REFERENCED_RT_PLAN_SEQUENCE = 0x300C0002
FRAME_OF_REFERENCE_UID = 0x00200052
REFERENCED_FRAME_OF_REFERENCE_UID = 0x30060024
SERIES_INSTANCE_UID = 0x0020000E
REFERENCED_SOP_INSTANCE_UID = 0x00081155

# (enclosing sequence or None for any, attribute) -> kind of target that must exist
_RULES: dict[tuple[int | None, int], str] = {
    (REFERENCED_FRAME_OF_REFERENCE_SEQUENCE, FRAME_OF_REFERENCE_UID): "frame of reference",
    (None, REFERENCED_FRAME_OF_REFERENCE_UID): "frame of reference",
    (RT_REFERENCED_SERIES_SEQUENCE, SERIES_INSTANCE_UID): "series",
    (CONTOUR_IMAGE_SEQUENCE, REFERENCED_SOP_INSTANCE_UID): "instance",
    (REFERENCED_STRUCTURE_SET_SEQUENCE, REFERENCED_SOP_INSTANCE_UID): "instance",
}
# A plan may name a predecessor plan that is not in the session; a dose must have its plan.
_DOSE_RULE: dict[tuple[int | None, int], str] = {
    (REFERENCED_RT_PLAN_SEQUENCE, REFERENCED_SOP_INSTANCE_UID): "instance"
}


@dataclass(frozen=True, slots=True)
class _Index:
    targets: dict[str, frozenset[str]]


def _uid(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _build_index(datasets: list[Dataset]) -> _Index:
    return _Index(
        {
            "instance": frozenset(_uid(d, "SOPInstanceUID") for d in datasets),
            "series": frozenset(_uid(d, "SeriesInstanceUID") for d in datasets),
            "frame of reference": frozenset(_uid(d, "FrameOfReferenceUID") for d in datasets),
        }
    )


def _references(ds: Dataset, parent: int | None) -> Iterator[tuple[int | None, int, str]]:
    for tag in list(ds.keys()):
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _references(item, int(tag))
        elif elem.VR == "UI":
            for uid in strings(elem):
                yield parent, int(tag), uid.strip()


def _problems(ds: Dataset, index: _Index) -> Iterator[str]:
    rules = dict(_RULES)
    if _uid(ds, "Modality") == "RTDOSE":
        rules.update(_DOSE_RULE)
    label = f"{_uid(ds, 'Modality') or 'instance'} {_uid(ds, 'SOPInstanceUID')}"
    for parent, tag, uid in _references(ds, None):
        kind = rules.get((parent, tag)) or rules.get((None, tag))
        if kind is not None and uid not in index.targets[kind]:
            yield f"{label}: references {kind} {uid}, which is not in the set"


def check_references(datasets: Iterable[Dataset]) -> list[str]:
    """Return one problem per unresolved reference within a set of instances (a session).

    Parameters
    ----------
    datasets
        Every instance of the session (images, RT Structure Set, RT Plan, RT Dose...).

    Returns
    -------
    list of str
        Human-readable problems naming UIDs only (no PHI); empty when all references resolve.
    """
    items = list(datasets)
    index = _build_index(items)
    return [problem for ds in items for problem in _problems(ds, index)]
