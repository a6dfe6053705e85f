"""Pseudonym schemes (pure functions) and the identity check behind ``identity_mismatch``.

Schemes: (a) :func:`keyed_pseudonym`, an HMAC of the normalised identity with per-component
hashes for record linkage; (b) :func:`sequential_pseudonym`, ``PREFIX-0001`` from a counter the
caller owns (e.g. :meth:`IdentityVault.next_sequence`); (c) :func:`mapped_pseudonym`, a lookup
in a provided mapping (see :func:`mapping_from_csv`).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pydicom.dataset import Dataset

from dicomgate.deid.errors import PseudonymError

COMPONENTS = ("first_name", "last_name", "birth_name", "birth_date")


@dataclass(frozen=True, slots=True)
class Identity:
    """A subject's confirmed identity (never logged; only stored encrypted in the vault)."""

    first_name: str
    last_name: str
    birth_name: str = ""
    birth_date: str = ""  # YYYYMMDD
    sex: str = ""

    def to_dict(self) -> dict[str, str]:
        """Return the fields as a plain dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class KeyedPseudonym:
    """The result of :func:`keyed_pseudonym`: subject id plus linkage hashes per component."""

    subject_id: str
    component_hashes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One field where the dataset disagrees with the confirmed identity (no values kept)."""

    field: str
    reason: str


def normalise(text: str) -> str:
    """Upper-case, strip accents and collapse whitespace (``" José  d'Arc "`` -> ``JOSE D'ARC``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.upper().replace("^", " ").split())


def normalised_components(identity: Identity) -> dict[str, str]:
    """Return the normalised linkage components of ``identity``."""
    return {name: normalise(getattr(identity, name)) for name in COMPONENTS}


def _hmac(secret: bytes, label: str, value: str) -> str:
    return hmac.new(secret, f"{label}\x1f{value}".encode(), hashlib.sha256).hexdigest()


def keyed_pseudonym(
    secret: bytes, identity: Identity, prefix: str = "", length: int = 16
) -> KeyedPseudonym:
    """Derive a subject id from the identity with the project secret (scheme a).

    Parameters
    ----------
    secret
        The project secret; another project gets unrelated ids and hashes.
    identity
        The subject's identity; normalised before hashing.
    prefix
        Prepended to the hex digest.
    length
        Number of hex digits kept for the subject id (16 = 64 bits).

    Returns
    -------
    KeyedPseudonym
        The subject id and the full per-component hashes for record linkage.
    """
    parts = normalised_components(identity)
    joined = "\x1e".join(parts[name] for name in COMPONENTS)
    subject_id = prefix + _hmac(secret, "identity", joined)[:length].upper()
    hashes = {name: _hmac(secret, name, value) for name, value in parts.items() if value}
    return KeyedPseudonym(subject_id=subject_id, component_hashes=hashes)


def sequential_pseudonym(prefix: str, counter: int, width: int = 4) -> str:
    """Return ``prefix`` + zero-padded ``counter`` (scheme b), e.g. ``SUBJ-0001``."""
    if counter < 1:
        raise PseudonymError("counter: must be 1 or more")
    return f"{prefix}{counter:0{width}d}"


def mapped_pseudonym(mapping: Mapping[str, str], original: str) -> str:
    """Return the pseudonym mapped to ``original`` (scheme c)."""
    try:
        return mapping[original.strip()]
    except KeyError:
        raise PseudonymError("no pseudonym is mapped for this subject") from None


def mapping_from_csv(text: str) -> dict[str, str]:
    """Parse a two-column CSV (``original,pseudonym`` header) into a mapping.

    Raises
    ------
    PseudonymError
        Naming the line of an empty, duplicate or unusable entry (no value is echoed).
    """
    try:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or {"original", "pseudonym"} - set(reader.fieldnames):
            raise PseudonymError("mapping CSV needs the columns 'original' and 'pseudonym'")
        rows = [(line, row) for line, row in enumerate(reader, start=2)]
    except csv.Error:
        raise PseudonymError("mapping CSV is not valid CSV") from None
    mapping: dict[str, str] = {}
    for line, row in rows:
        original, pseudonym = (str(row.get(k) or "").strip() for k in ("original", "pseudonym"))
        if not original or not pseudonym or original in mapping:
            raise PseudonymError(f"mapping CSV line {line}: empty or duplicate entry")
        _check_entry(pseudonym, original, f"mapping CSV line {line}")
        mapping[original] = pseudonym
    return mapping


def mapping_from_pairs(pairs: Mapping[str, object]) -> dict[str, str]:
    """Validate a mapping given as JSON (``{"<Patient ID>": "<pseudonym>", ...}``).

    Raises
    ------
    PseudonymError
        Naming the position of an entry that is empty, not text or unusable.
    """
    mapping: dict[str, str] = {}
    for n, (original, pseudonym) in enumerate(pairs.items()):
        if not isinstance(pseudonym, str) or not original.strip() or not pseudonym.strip():
            raise PseudonymError(f"mapping entry {n}: the pseudonym must be non-empty text")
        _check_entry(pseudonym.strip(), original.strip(), f"mapping entry {n}")
        if original.strip() in mapping:
            raise PseudonymError(f"mapping entry {n}: duplicate Patient ID")
        mapping[original.strip()] = pseudonym.strip()
    return mapping


def _check_entry(pseudonym: str, original: str, where: str) -> None:
    # The pseudonym becomes Patient ID (LO: 64 characters, no backslash); no value is echoed.
    if len(pseudonym) > 64 or len(original) > 64 or any(c in pseudonym for c in "\\^"):
        raise PseudonymError(f"{where}: at most 64 characters, no '\\' or '^' in a pseudonym")


def _dataset_identity(ds: Dataset) -> dict[str, str]:
    name = str(ds.get("PatientName", "") or "").split("^")
    birth = str(ds.get("PatientBirthName", "") or "").split("^")
    return {
        "last_name": name[0],
        "first_name": name[1] if len(name) > 1 else "",
        "birth_name": birth[0],
        "birth_date": str(ds.get("PatientBirthDate", "") or ""),
        "sex": str(ds.get("PatientSex", "") or ""),
    }


def compare_identity(confirmed: Identity, dataset: Dataset) -> list[Mismatch]:
    """List the fields where ``dataset`` contradicts the confirmed identity.

    Only fields the confirmed identity fills are compared, after normalisation.

    Parameters
    ----------
    confirmed
        The identity confirmed by the data manager (or the vault).
    dataset
        The incoming instance.

    Returns
    -------
    list of Mismatch
        Empty when consistent; field names only, never the values.
    """
    found = _dataset_identity(dataset)
    mismatches = []
    for field, expected in confirmed.to_dict().items():
        if not expected.strip():
            continue
        actual = found[field]
        if not actual.strip():
            mismatches.append(Mismatch(field, "missing in dataset"))
        elif normalise(actual) != normalise(expected):
            mismatches.append(Mismatch(field, "differs"))
    return mismatches
