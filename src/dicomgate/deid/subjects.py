"""Per-subject keys from the identity vault: who the subject is, its pseudonym and offset.

The functions take the vault and the project's pseudonym settings as arguments; they read
no global state. The same identity in the same project always gets the same keys (the vault
finds it by a keyed hash of the normalised identity); another project gets its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydicom.dataset import Dataset

from dicomgate.deid.config import PseudonymConfig, PseudonymScheme
from dicomgate.deid.identity import header_identity
from dicomgate.deid.keys import DeidKeys, is_standard_uid, remap_uid
from dicomgate.deid.pseudonyms import Identity, keyed_pseudonym, mapped_pseudonym, normalise
from dicomgate.deid.values import strings
from dicomgate.deid.vault import IdentityVault


def subject_identity(header: Dataset) -> Identity:
    """Return the identity the vault knows the subject by: the headers' own.

    An operator-confirmed identity is checked against the headers first and agrees with them
    on every field it fills, so the headers give the same vault lookup on every route in
    (imports with or without a confirmed identity, sharing). A patient without any name is
    known by its Patient ID, so that distinct anonymous patients never share a pseudonym.
    """
    identity = header_identity(header)
    if normalise(identity.first_name) or normalise(identity.last_name):
        return identity
    return Identity(first_name="", last_name=f"PATIENT ID {header.get('PatientID', '')}")


def subject_keys(
    vault: IdentityVault,
    project: str,
    config: PseudonymConfig,
    identity: Identity,
    header: Dataset,
) -> DeidKeys:
    """Return the subject's keys in ``project``, creating its pseudonym on first sight.

    Raises
    ------
    PseudonymError
        The mapping scheme has no pseudonym for this Patient ID (neither in the mapping
        stored in the vault nor in ``mapping_file``).
    KeysError
        The pseudonym is not a usable Patient ID (from a mapping file).
    """
    secret = vault.project_secret(project)
    found = vault.find_subject(project, identity)
    if found is None:
        pseudonym: str | None = None
        keyed = keyed_pseudonym(secret, identity, config.prefix, config.length)
        if config.scheme is PseudonymScheme.KEYED:
            pseudonym = keyed.subject_id
        elif config.scheme is PseudonymScheme.MAPPING:
            patient_id = str(header.get("PatientID", ""))
            stored = vault.mapped_pseudonym(project, patient_id)  # uploaded over REST / CLI
            pseudonym = stored or mapped_pseudonym(config.mapping, patient_id)
        found = vault.get_or_create_subject(
            project, identity, pseudonym, prefix=config.prefix, width=config.width,
            component_hashes=keyed.component_hashes,  # kept for record linkage, any scheme
        )  # fmt: skip
    return DeidKeys(secret, found.pseudonym, found.date_offset_days)


def _uids(ds: Dataset) -> Iterator[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _uids(item)
        elif elem.VR == "UI":
            yield from (v.strip() for v in strings(elem))


def uid_pairs(datasets: Iterable[Dataset], keys: DeidKeys) -> list[tuple[str, str]]:
    """Return ``(original, replacement)`` for every non-standard UID in ``datasets``."""
    datasets = list(datasets)
    found = {uid for ds in datasets for uid in _uids(ds) if uid and not is_standard_uid(uid)}
    for ds in datasets:
        meta = getattr(ds, "file_meta", None)
        uid = str(meta.get("MediaStorageSOPInstanceUID", "")) if meta is not None else ""
        if uid and not is_standard_uid(uid):
            found.add(uid)
    return [(uid, remap_uid(keys.uid_secret, uid)) for uid in sorted(found)]
