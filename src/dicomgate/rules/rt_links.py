"""RT integrity: references from RT objects that resolve neither in the session nor in the archive.

References followed (PS3.3 C.8.8):

- RT Structure Set: ReferencedFrameOfReferenceSequence > FrameOfReferenceUID, its
  RTReferencedStudySequence (study), RTReferencedSeriesSequence (series) and ContourImageSequence
  (instances); StructureSetROISequence > ReferencedFrameOfReferenceUID; ROIContourSequence >
  ContourSequence > ContourImageSequence (instances).
- RT Plan / RT Ion Plan: ReferencedStructureSetSequence and ReferencedDoseSequence (instances).
- RT Dose: ReferencedRTPlanSequence and ReferencedStructureSetSequence (instances).

A reference resolves when another instance of the session declares the UID (as its SOP Instance,
Series Instance, Study Instance or Frame of Reference UID) or when the caller's lookup says it is
archived in the target project. Nothing is guessed: an object never resolves its own reference.

Separately, RT objects that share a Series Instance UID with instances of another SOP class, or a
Series Number with another series, are reported as non-blocking findings.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence, Set
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.rules.decision import Finding, FindingCode

RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RT_ION_PLAN = "1.2.840.10008.5.1.4.1.1.481.8"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
_RT_MODALITIES = {"RTSTRUCT": RT_STRUCT, "RTPLAN": RT_PLAN, "RTDOSE": RT_DOSE}


class RefKind(enum.StrEnum):
    """What kind of object a UID reference points at."""

    FRAME_OF_REFERENCE = "frame_of_reference"
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


ArchivedLookup = Callable[[RefKind, str], bool]
_DECLARED_BY = {
    RefKind.INSTANCE: "SOPInstanceUID",
    RefKind.SERIES: "SeriesInstanceUID",
    RefKind.STUDY: "StudyInstanceUID",
    RefKind.FRAME_OF_REFERENCE: "FrameOfReferenceUID",
}
_FOR_SEQ = "ReferencedFrameOfReferenceSequence"
_STUDY_SEQ = (_FOR_SEQ, "RTReferencedStudySequence")
_SERIES_SEQ = (*_STUDY_SEQ, "RTReferencedSeriesSequence")
# (kind, sequences to walk, attribute holding the UID), per RT SOP class.
_STRUCT_REFS = (
    (RefKind.FRAME_OF_REFERENCE, (_FOR_SEQ,), "FrameOfReferenceUID"),
    (RefKind.STUDY, _STUDY_SEQ, "ReferencedSOPInstanceUID"),
    (RefKind.SERIES, _SERIES_SEQ, "SeriesInstanceUID"),
    (RefKind.INSTANCE, (*_SERIES_SEQ, "ContourImageSequence"), "ReferencedSOPInstanceUID"),
    (RefKind.FRAME_OF_REFERENCE, ("StructureSetROISequence",), "ReferencedFrameOfReferenceUID"),
    (
        RefKind.INSTANCE,
        ("ROIContourSequence", "ContourSequence", "ContourImageSequence"),
        "ReferencedSOPInstanceUID",
    ),
)
_PLAN_REFS = (
    (RefKind.INSTANCE, ("ReferencedStructureSetSequence",), "ReferencedSOPInstanceUID"),
    (RefKind.INSTANCE, ("ReferencedDoseSequence",), "ReferencedSOPInstanceUID"),
)
_DOSE_REFS = (
    (RefKind.INSTANCE, ("ReferencedRTPlanSequence",), "ReferencedSOPInstanceUID"),
    (RefKind.INSTANCE, ("ReferencedStructureSetSequence",), "ReferencedSOPInstanceUID"),
)
_REFS_BY_CLASS = {
    RT_STRUCT: _STRUCT_REFS,
    RT_PLAN: _PLAN_REFS,
    RT_ION_PLAN: _PLAN_REFS,
    RT_DOSE: _DOSE_REFS,
}


@dataclass(frozen=True, slots=True)
class ArchivedUids:
    """UIDs already archived in the target project, by kind; usable as an ``ArchivedLookup``."""

    instances: frozenset[str] = frozenset()
    series: frozenset[str] = frozenset()
    studies: frozenset[str] = frozenset()
    frames_of_reference: frozenset[str] = frozenset()

    def __call__(self, kind: RefKind, uid: str) -> bool:
        """Return whether ``uid`` of ``kind`` is archived."""
        pools = {
            RefKind.INSTANCE: self.instances,
            RefKind.SERIES: self.series,
            RefKind.STUDY: self.studies,
            RefKind.FRAME_OF_REFERENCE: self.frames_of_reference,
        }
        return uid in pools[kind]


def as_lookup(archived: ArchivedLookup | Set[str] | None) -> ArchivedLookup:
    """Normalise what the caller knows about the archive to a lookup callable.

    Parameters
    ----------
    archived
        A callable ``(kind, uid) -> bool`` (``ArchivedUids`` is one), a plain set of UIDs of any
        kind (UIDs are globally unique, so the kind is not needed), or None for an empty archive.

    Returns
    -------
    ArchivedLookup
        The lookup.
    """
    if archived is None:
        return lambda kind, uid: False
    if isinstance(archived, Set):
        uids = archived
        return lambda kind, uid: uid in uids
    return archived


@dataclass(frozen=True, slots=True)
class Reference:
    """One UID reference from an RT object.

    Parameters
    ----------
    kind
        What the UID points at.
    uid
        The referenced UID.
    referenced_by
        SOP Instance UID of the RT object holding the reference.
    via
        The attribute path the reference was read from.
    """

    kind: RefKind
    uid: str
    referenced_by: str
    via: str

    def to_json(self) -> dict[str, str]:
        """Return a JSON-serialisable form."""
        return {
            "kind": self.kind.value,
            "uid": self.uid,
            "referenced_by": self.referenced_by,
            "via": self.via,
        }


@dataclass(frozen=True, slots=True)
class RtReport:
    """Missing references and shared-series findings of one session."""

    missing: tuple[Reference, ...] = ()
    shared_series: tuple[Finding, ...] = ()

    def reasons(self) -> list[Reason]:
        """Return one RT_REFERENCES_MISSING reason listing the missing references, if any."""
        if not self.missing:
            return []
        message = (
            f"{len(self.missing)} reference(s) from RT objects resolve neither in the session "
            "nor in the project"
        )
        details: dict[str, object] = {"missing": [ref.to_json() for ref in self.missing]}
        return [Reason(ReasonCode.RT_REFERENCES_MISSING, message, details)]


def rt_class(header: Dataset) -> str | None:
    """Return the RT SOP class of a header (by SOP Class UID, else Modality), or None."""
    sop_class = str(header.get("SOPClassUID", "") or "")
    if sop_class in _REFS_BY_CLASS:
        return sop_class
    return _RT_MODALITIES.get(str(header.get("Modality", "") or ""))


def references_of(header: Dataset) -> list[Reference]:
    """List the UID references an RT object makes (nothing for other objects).

    Parameters
    ----------
    header
        The instance header (contour data is not pixel data, so a header read suffices).

    Returns
    -------
    list of Reference
        Deduplicated references in reading order.
    """
    specs = _REFS_BY_CLASS.get(rt_class(header) or "", ())
    owner = str(header.get("SOPInstanceUID", "") or "")
    found: dict[tuple[RefKind, str, str], Reference] = {}
    for kind, sequences, leaf in specs:
        via = " > ".join((*sequences, leaf))
        for uid in _walk(header, sequences, leaf):
            found.setdefault((kind, uid, owner), Reference(kind, uid, owner, via))
    return list(found.values())


def _walk(item: Dataset, sequences: tuple[str, ...], leaf: str) -> Iterator[str]:
    if not sequences:
        value = str(item.get(leaf, "") or "").strip()
        if value:
            yield value
        return
    for child in item.get(sequences[0]) or ():
        yield from _walk(child, sequences[1:], leaf)


def check_rt_links(
    headers: Sequence[Dataset], archived: ArchivedLookup | Set[str] | None = None
) -> RtReport:
    """Find the unresolved references and shared-series findings of one session.

    Parameters
    ----------
    headers
        Every instance header of the session (images and RT objects).
    archived
        What is already archived in the target project (see ``as_lookup``).

    Returns
    -------
    RtReport
        Missing references and non-blocking findings.
    """
    lookup = as_lookup(archived)
    declared = _declared(headers)
    missing = [
        ref
        for header in headers
        for ref in references_of(header)
        if not (declared.get((ref.kind, ref.uid), set()) - {ref.referenced_by})
        and not lookup(ref.kind, ref.uid)
    ]
    return RtReport(tuple(missing), tuple(shared_series_findings(headers)))


def _declared(headers: Sequence[Dataset]) -> dict[tuple[RefKind, str], set[str]]:
    declared: dict[tuple[RefKind, str], set[str]] = {}
    for header in headers:
        owner = str(header.get("SOPInstanceUID", "") or "")
        for kind, keyword in _DECLARED_BY.items():
            uid = str(header.get(keyword, "") or "").strip()
            if uid:
                declared.setdefault((kind, uid), set()).add(owner)
    return declared


def shared_series_findings(headers: Sequence[Dataset]) -> list[Finding]:
    """Flag RT objects whose series is shared with other objects or whose number is reused.

    Parameters
    ----------
    headers
        Every instance header of the session.

    Returns
    -------
    list of Finding
        One RT_SHARED_SERIES_UID finding per mixed series holding an RT object, and one
        RT_SHARED_SERIES_NUMBER finding per Series Number used by several series, one of which
        holds an RT object.
    """
    classes: dict[str, set[str]] = {}
    numbers: dict[str, set[str]] = {}
    rt_series: set[str] = set()
    for header in headers:
        series = str(header.get("SeriesInstanceUID", "") or "")
        classes.setdefault(series, set()).add(str(header.get("SOPClassUID", "") or ""))
        number = str(header.get("SeriesNumber", "") or "").strip()
        if number:
            numbers.setdefault(number, set()).add(series)
        if rt_class(header):
            rt_series.add(series)
    findings = [_shared_uid(s, classes[s]) for s in sorted(rt_series) if len(classes[s]) > 1]
    for number, series_uids in sorted(numbers.items()):
        if len(series_uids) > 1 and series_uids & rt_series:
            findings.append(_shared_number(number, series_uids))
    return findings


def _shared_uid(series: str, sop_classes: set[str]) -> Finding:
    return Finding(
        FindingCode.RT_SHARED_SERIES_UID,
        "an RT object shares its Series Instance UID with objects of another SOP class",
        {"series_instance_uid": series, "sop_class_uids": sorted(sop_classes)},
    )


def _shared_number(number: str, series_uids: set[str]) -> Finding:
    return Finding(
        FindingCode.RT_SHARED_SERIES_NUMBER,
        f"Series Number {number} is used by {len(series_uids)} series, one holding an RT object",
        {"series_number": number, "series_instance_uids": sorted(series_uids)},
    )
