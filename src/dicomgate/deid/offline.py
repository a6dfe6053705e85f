"""Offline helpers for the CLI: de-identify a folder, verify files against a profile."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomgate.deid.engine import apply
from dicomgate.deid.errors import DeidError
from dicomgate.deid.identity import header_identity
from dicomgate.deid.keys import DeidKeys
from dicomgate.deid.profile import Profile
from dicomgate.deid.pseudonyms import Identity, keyed_pseudonym
from dicomgate.deid.verify import Violation, verify_dataset
from dicomgate.dicom.encode import encode_part10_parts

KeysProvider = Callable[[Dataset], DeidKeys]
"""Returns the keys for one source instance (e.g. vault lookup of its patient)."""


def keyed_provider(
    secret: bytes, prefix: str = "SUBJ-", offset_range: tuple[int, int] = (-365, 365)
) -> KeysProvider:
    """Return keys derived from the headers alone (no vault), for offline folders.

    The pseudonym is the keyed hash of the normalised identity (scheme a); when the headers
    carry no name, the Patient ID is hashed instead so that distinct anonymous patients stay
    distinct. The date offset is derived from the pseudonym with the same secret, so the
    same secret gives the same pseudonym, UIDs and offset for a subject on every run.
    """
    low, high = offset_range

    def provide(ds: Dataset) -> DeidKeys:
        identity = header_identity(ds)
        if not (identity.first_name or identity.last_name):
            identity = Identity(first_name="", last_name=f"ID {ds.get('PatientID', '')}")
        subject = keyed_pseudonym(secret, identity, prefix=prefix).subject_id
        digest = hmac.digest(secret, f"offset\x1f{subject}".encode(), hashlib.sha256)
        offset = low + int.from_bytes(digest[:8], "big") % (high - low + 1)
        return DeidKeys(secret, subject, date_offset_days=offset or high or low)

    return provide


@dataclass(slots=True)
class FolderSummary:
    """The outcome of :func:`deid_folder`; paths are relative to the input folder."""

    processed: int = 0
    written: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    yield from sorted(p for p in root.rglob("*") if p.is_file())


def write_dataset(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a DICOM file, filling the file meta a headerless source lacked."""
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit = ds.original_encoding[0]
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        )
    with path.open("wb") as handle:
        handle.writelines(encode_part10_parts(ds))


def deid_folder(
    in_dir: str | Path, out_dir: str | Path, profile: Profile, keys_provider: KeysProvider
) -> FolderSummary:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir``.

    Output files are named by a counter (``000001.dcm``...), never by input names or UIDs,
    which may carry identity. Non-DICOM files and failures are listed, not fatal.

    Parameters
    ----------
    in_dir, out_dir
        Source folder (read recursively) and destination folder (created).
    profile
        The profile to apply.
    keys_provider
        Returns the keys for each source dataset.

    Returns
    -------
    FolderSummary
        Counts, plus quarantined and failed files with reasons.
    """
    root, out = Path(in_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = FolderSummary()
    for path in _files(root):
        rel = str(path.relative_to(root)) if path != root else path.name
        summary.processed += 1
        try:
            source = dcmread(path)
            result = apply(source, profile, keys_provider(source))
        except (InvalidDicomError, DeidError, OSError, ValueError) as exc:
            summary.failed.append((rel, f"{type(exc).__name__}: {exc}"))
            continue
        if result.dataset is None:
            summary.quarantined.append((rel, result.quarantine_reason or "quarantined"))
            continue
        write_dataset(result.dataset, out / f"{summary.written + 1:06d}.dcm")
        summary.written += 1
    return summary


def verify_path(path: str | Path, profile: Profile) -> list[Violation]:
    """Check one file or every file under a folder against ``profile``.

    Parameters
    ----------
    path
        A DICOM file or a folder of them.
    profile
        The profile the files claim to satisfy.

    Returns
    -------
    list of Violation
        Every violating attribute in every file; unreadable files give one ``unreadable`` entry.
    """
    violations: list[Violation] = []
    for file in _files(Path(path)):
        try:
            ds = dcmread(file)
        except (InvalidDicomError, OSError, ValueError):
            violations.append(Violation(str(file), "", "", "unreadable"))
            continue
        violations.extend(verify_dataset(ds, profile, str(file)))
    return violations
