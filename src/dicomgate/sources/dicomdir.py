"""Read the DICOMDIR of a CD/DVD (or a copy of one) into patients, studies, series and files.

The directory records are linked by byte offsets; they are followed with a guard against
loops, and records that no link reaches but that reference a file are kept (listed under an
unknown study) rather than dropped. Every Referenced File ID is checked before it is used as
a path: components must be plain names, no link may be crossed, and the result must stay
inside the media root. What the media holds is compared with what the DICOMDIR lists, both
ways, and a file's header can be compared with its record (:func:`disagreements`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from dicomgate.errors import InvalidInputError
from dicomgate.sources.scan import Found, walk

_FIRST = "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity"
_NEXT = "OffsetOfTheNextDirectoryRecord"
_LOWER = "OffsetOfReferencedLowerLevelDirectoryEntity"
_BAD_COMPONENTS = ("", ".", "..")
MISSING = "listed in the DICOMDIR but missing from the media"


class MediaError(InvalidInputError):
    """The DICOMDIR cannot be read or is not a DICOMDIR."""


@dataclass
class Listed:
    """One directory record that references a file.

    Parameters
    ----------
    key
        The Referenced File ID joined with ``/`` (as the DICOMDIR spells it).
    record_type
        Directory Record Type (IMAGE, RT DOSE, SR DOCUMENT, ...).
    expected
        What the record says about the file: header keyword -> value (UIDs only).
    patient, study, series
        Indexes of the record's place in :attr:`Media.patients` (``-1`` when unknown).
    path
        The file on the media, or None when it is missing or refused.
    problem
        Why the file cannot be imported (missing, escapes the root), or ``""``.
    """

    key: str
    record_type: str
    expected: dict[str, str]
    path: Path | None = None
    problem: str = ""


@dataclass
class SeriesNode:
    """A series record and the files listed below it."""

    uid: str
    modality: str = ""
    number: str = ""
    files: list[Listed] = field(default_factory=list)


@dataclass
class StudyNode:
    """A study record and its series."""

    uid: str
    date: str = ""
    description: str = ""
    series: dict[str, SeriesNode] = field(default_factory=dict)


@dataclass
class PatientNode:
    """A patient record and its studies (name and ID are PHI: shown, never logged)."""

    patient_id: str = ""
    name: str = ""
    studies: dict[str, StudyNode] = field(default_factory=dict)


@dataclass
class Media:
    """What a DICOMDIR lists and how the media compares with it.

    Parameters
    ----------
    root
        The media root (the folder holding the DICOMDIR).
    dicomdir
        The DICOMDIR file.
    patients
        The record tree.
    unlisted
        Files on the media that no record references (DICOMDIR and descriptor excluded).
    problems
        Structural problems of the DICOMDIR itself (loops, unlinked records).
    """

    root: Path
    dicomdir: Path
    patients: list[PatientNode] = field(default_factory=list)
    unlisted: list[Found] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def files(self, study: str | None = None, series: str | None = None) -> list[Listed]:
        """Return the listed files, optionally only of one study and/or one series."""
        return [
            listed
            for patient in self.patients
            for st_uid, st in patient.studies.items()
            if study is None or st_uid == study
            for se_uid, se in st.series.items()
            if series is None or se_uid == series
            for listed in se.files
        ]


def find_dicomdir(root: Path) -> Path | None:
    """Return the DICOMDIR file directly in ``root`` (any letter case), or None."""
    try:
        names = os.listdir(root)
    except OSError:
        return None
    for name in sorted(names):
        path = root / name
        if name.upper() in ("DICOMDIR", "DICOMDIR;1") and not path.is_symlink() and path.is_file():
            return path
    return None


def read_media(root: Path) -> Media:
    """Read the DICOMDIR in ``root`` and compare it with the files on the media.

    Raises
    ------
    MediaError
        When there is no DICOMDIR or it cannot be read as one.
    """
    dicomdir = find_dicomdir(root)
    if dicomdir is None:
        raise MediaError("no DICOMDIR in this folder")
    try:
        ds = dcmread(dicomdir)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise MediaError(f"the DICOMDIR cannot be read: {exc}") from exc
    if "DirectoryRecordSequence" not in ds:
        raise MediaError("the DICOMDIR has no Directory Record Sequence")
    media = Media(root, dicomdir)
    records = list(ds.DirectoryRecordSequence)
    parents = _link(ds, records, media.problems)
    _build_tree(media, records, parents)
    _resolve_files(media)
    _find_unlisted(media, _descriptor(ds))
    return media


def _link(ds: Dataset, records: list[Dataset], problems: list[str]) -> dict[int, int | None]:
    """Return record index -> parent record index by following the offsets (loop-safe)."""
    at = {getattr(r, "seq_item_tell", None): i for i, r in enumerate(records)}
    parents: dict[int, int | None] = {}
    todo: list[tuple[int, int | None]] = [(int(ds.get(_FIRST, 0) or 0), None)]
    while todo:
        offset, parent = todo.pop()
        while offset:
            index = at.get(offset)
            if index is None:
                problems.append(f"a directory record offset ({offset}) points at no record")
                break
            if index in parents:
                problems.append("the directory records link into a loop; the loop was cut")
                break
            parents[index] = parent
            lower = int(records[index].get(_LOWER, 0) or 0)
            if lower:
                todo.append((lower, index))
            offset = int(records[index].get(_NEXT, 0) or 0)
    if records and not parents:
        problems.append("no record is linked from the DICOMDIR root; records read in order")
        return _by_order(records)
    unlinked = len(records) - len(parents)
    if unlinked:
        problems.append(f"{unlinked} directory records are not linked into the hierarchy")
        for index, parent in _by_order(records).items():
            parents.setdefault(index, parent)  # placed by order and type instead
    return parents


_LEVEL = {"PATIENT": 0, "STUDY": 1, "SERIES": 2}


def _by_order(records: list[Dataset]) -> dict[int, int | None]:
    """Derive parents from record order and type when the offsets cannot be used."""
    parents: dict[int, int | None] = {}
    open_levels: list[int | None] = [None, None, None]
    for index, record in enumerate(records):
        level = _LEVEL.get(str(record.get("DirectoryRecordType", "")), 3)
        parents[index] = next((p for p in reversed(open_levels[:level]) if p is not None), None)
        if level < 3:
            open_levels[level] = index
            open_levels[level + 1 :] = [None] * (2 - level)
    return parents


def _ancestor(records: list[Dataset], parents: dict[int, int | None], index: int, kind: str) -> int:
    """Return the index of the nearest ancestor record of type ``kind`` (``-1`` if none)."""
    seen: set[int] = set()
    current = parents.get(index)
    while current is not None and current not in seen:
        seen.add(current)
        if records[current].get("DirectoryRecordType") == kind:
            return current
        current = parents.get(current)
    return -1


def _build_tree(media: Media, records: list[Dataset], parents: dict[int, int | None]) -> None:
    patients: dict[int, PatientNode] = {}

    def record(index: int) -> Dataset:
        return records[index] if index >= 0 else Dataset()

    for index, leaf in enumerate(records):
        if "ReferencedFileID" not in leaf or leaf.get("RecordInUseFlag", 0xFFFF) == 0:
            continue
        pat_at = _ancestor(records, parents, index, "PATIENT")
        pat = record(pat_at)
        study = record(_ancestor(records, parents, index, "STUDY"))
        series = record(_ancestor(records, parents, index, "SERIES"))
        patient = patients.setdefault(
            pat_at, PatientNode(_text(pat, "PatientID"), _text(pat, "PatientName"))
        )
        study_uid = _text(study, "StudyInstanceUID")
        st = patient.studies.setdefault(
            study_uid,
            StudyNode(study_uid, _text(study, "StudyDate"), _text(study, "StudyDescription")),
        )
        series_uid = _text(series, "SeriesInstanceUID")
        se = st.series.setdefault(
            series_uid,
            SeriesNode(series_uid, _text(series, "Modality"), _text(series, "SeriesNumber")),
        )
        se.files.append(_listed(leaf, study_uid, series_uid))
    media.patients = list(patients.values())


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _listed(record: Dataset, study_uid: str, series_uid: str) -> Listed:
    file_id = record.ReferencedFileID
    parts = [str(p) for p in ([file_id] if isinstance(file_id, str) else file_id or [])]
    expected = {
        "SOPInstanceUID": _text(record, "ReferencedSOPInstanceUIDInFile"),
        "SOPClassUID": _text(record, "ReferencedSOPClassUIDInFile"),
        "TransferSyntaxUID": _text(record, "ReferencedTransferSyntaxUIDInFile"),
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": series_uid,
    }
    listed = Listed("/".join(parts), _text(record, "DirectoryRecordType"), expected)
    listed.problem = _file_id_problem(parts)
    return listed


def _file_id_problem(parts: list[str]) -> str:
    """Return why a Referenced File ID may not be used as a path below the root, or ``""``."""
    if not parts:
        return "refused: empty Referenced File ID"
    for part in parts:
        if part.strip() in _BAD_COMPONENTS or any(c in part for c in "/\\\x00:"):
            return "refused: the Referenced File ID would escape the media root"
    return ""


def _lookup(folder: Path, name: str) -> Path | None:
    """Return ``folder/name``, matching letter case and an ISO 9660 ``;1`` loosely."""
    exact = folder / name
    if os.path.lexists(exact):
        return exact
    wanted = _iso_base(name)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    return next((folder / c for c in names if _iso_base(c) == wanted), None)


def _iso_base(name: str) -> str:
    """Return a name without an ISO 9660 version (``;1``) or a trailing dot, upper case."""
    base, sep, version = name.rpartition(";")
    if sep and version.isdigit():
        name = base
    return name.rstrip(".").upper()


def _resolve(root: Path, parts: list[str]) -> tuple[Path | None, str]:
    """Return the file a File ID names below ``root`` and a problem (never crossing a link)."""
    current = root
    for part in parts:
        found = _lookup(current, part.strip())
        if found is None:
            return None, MISSING
        if found.is_symlink():
            return None, "refused: the Referenced File ID goes through a symbolic link"
        current = found
    if not current.resolve().is_relative_to(root.resolve()):
        return None, "refused: the Referenced File ID would escape the media root"
    if not current.is_file():
        return None, "refused: the Referenced File ID names something that is not a file"
    return current, ""


def _resolve_files(media: Media) -> None:
    for listed in media.files():
        if not listed.problem:
            listed.path, listed.problem = _resolve(media.root, listed.key.split("/"))


def _descriptor(ds: Dataset) -> str:
    value = ds.get("FileSetDescriptorFileID")
    if not value:
        return ""
    return "/".join(str(p) for p in ([value] if isinstance(value, str) else value))


def _find_unlisted(media: Media, descriptor: str) -> None:
    root = media.root.resolve()
    listed = {
        listed.path.resolve().relative_to(root).as_posix()
        for listed in media.files()
        if listed.path is not None
    } | {listed.key for listed in media.files()}  # a refused one is reported once, as listed
    skip = {media.dicomdir.name}
    media.unlisted = [
        found
        for found in walk(media.root, frozenset(skip))
        if found.key not in listed and found.key.upper() != descriptor.upper()
    ]


def disagreements(listed: Listed, header: Dataset) -> list[str]:
    """Return the attributes on which a file's header disagrees with its DICOMDIR record.

    Parameters
    ----------
    listed
        The record.
    header
        The file's header (with its file meta, for the transfer syntax).
    """
    meta = getattr(header, "file_meta", Dataset())
    found = {
        "SOPInstanceUID": _text(header, "SOPInstanceUID"),
        "SOPClassUID": _text(header, "SOPClassUID"),
        "TransferSyntaxUID": _text(meta, "TransferSyntaxUID"),
        "StudyInstanceUID": _text(header, "StudyInstanceUID"),
        "SeriesInstanceUID": _text(header, "SeriesInstanceUID"),
    }
    return [k for k, v in listed.expected.items() if v and found.get(k) and v != found[k]]


def read_header(path: Path) -> Dataset:
    """Read the few header attributes :func:`disagreements` compares (file meta included).

    Raises
    ------
    MediaError
        When the file is not readable as DICOM.
    """
    tags = ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"]
    try:
        return dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise MediaError(f"cannot read the header: {exc}") from exc


def summary(media: Media) -> Iterable[str]:
    """Yield one line per problem: structure, missing and refused files, unlisted files."""
    yield from media.problems
    for listed in media.files():
        if listed.problem:
            yield f"{listed.key}: {listed.problem}"
    for found in media.unlisted:
        yield f"{found.key}: present on the media but not listed in the DICOMDIR"
