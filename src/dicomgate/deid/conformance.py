"""Resolve the combined action codes of Table E.1-1 without a full IOD table.

PS3.15 lets ``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D`` and ``X/Z/U*`` depend on whether the attribute
is Type 1, 2 or 3 in the IOD being de-identified. dicomgate does not ship the IOD module
tables, so it uses one documented, conservative rule:

* an attribute listed in :data:`TYPE1_IN_COMMON_IODS` is treated as Type 1: it gets ``D`` (a
  dummy) when the code allows ``D``, otherwise ``Z``;
* an attribute listed in :data:`TYPE2_IN_COMMON_IODS` is treated as Type 2: it gets ``Z`` when
  the code allows ``Z``, otherwise ``D``;
* every other attribute is treated as Type 3 and removed (``X``) when the code allows it;
  ``Z/D`` (which cannot remove) then falls back to ``Z``;
* ``X/Z/U*`` (Referenced Image Sequence, Source Image Sequence) keeps the sequence and replaces
  the UIDs inside it, because removing it breaks references that viewers and RT tools follow.

The two lists hold attributes that are Type 1 or Type 2 in at least one IOD commonly archived
(CT, MR, PET, US, CR/DX, SC, enhanced CT/MR, RT Structure Set/Plan/Dose/Treatment Record, SR,
presentation states). "Conservative" means a file never loses an attribute that one of those
IODs requires; the price is an occasional dummy value where the real IOD would allow removal.
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

TYPE1_IN_COMMON_IODS = frozenset(
    {
        "ContentDate",  # Type 1 in SR Document General and multi-frame enhanced images
        "ContentTime",
        "AcquisitionDateTime",  # Type 1C in enhanced CT/MR image modules
        "DeviceSerialNumber",  # Type 1 in Enhanced General Equipment
        "RTPlanDate",  # RT General Plan, kept present so plans stay conformant
        "RTPlanTime",
        "TreatmentDate",  # RT General Treatment Record
        "TreatmentTime",
    }
)

TYPE2_IN_COMMON_IODS = frozenset(
    {
        "PatientID",  # Patient module
        "ContentCreatorName",  # presentation state identification
        "ContrastBolusAgent",  # Contrast/Bolus module
        "AcquisitionContextSequence",  # Acquisition Context module (SR, enhanced images)
        "TreatmentMachineName",  # RT Beams module
        "ReviewerName",  # Approval module (Type 2C)
        "InstructionPerformedDateTime",
    }
)


def _tags(keywords: frozenset[str]) -> frozenset[int]:
    tags = (tag_for_keyword(k) for k in keywords)
    return frozenset(t for t in tags if t is not None)


TYPE1_TAGS = _tags(TYPE1_IN_COMMON_IODS)
TYPE2_TAGS = _tags(TYPE2_IN_COMMON_IODS)


def resolve_code(tag: int | None, code: str) -> str:
    """Reduce a possibly combined action code to one of ``X Z D K C U``.

    Parameters
    ----------
    tag
        The attribute tag (``None`` for a pattern row, which is treated as Type 3).
    code
        The action code from the table, e.g. ``X/Z/D``.

    Returns
    -------
    str
        A single action code.
    """
    if "/" not in code:
        return code
    if code == "X/Z/U*":
        return "K"  # keep the sequence; the U rows inside it remap every UID
    allowed = code.split("/")
    if tag in TYPE1_TAGS:
        preference = ["D", "Z"]
    elif tag in TYPE2_TAGS:
        preference = ["Z", "D"]
    else:
        preference = ["X", "Z", "D"]
    return next(c for c in preference if c in allowed)
