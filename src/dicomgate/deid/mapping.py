"""Pseudonym mappings given by a study (scheme c), uploaded into the vault over REST or CLI.

A study that assigns its own subject codes hands dicomgate a Patient ID -> pseudonym mapping.
Given as ``mapping_file`` it is read at start; uploaded (``PUT
/api/projects/{p}/pseudonym-mapping`` or ``dicomgate deid mapping PROJECT FILE``) it is kept
in the identity vault, encrypted like every other identifying value (a Patient ID is one), and
takes effect for the next session archived: no restart. Entries only add; an entry that would
change a stored pseudonym is refused, so that a subject keeps its pseudonym for years.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dicomgate.deid.config import DeidSettings, ProjectDeid, PseudonymScheme, open_vault
from dicomgate.deid.errors import PseudonymError


@dataclass(frozen=True, slots=True)
class MappingUpload:
    """What an upload did: entries new in the vault, and the project's total."""

    project: str
    added: int
    total: int


def upload_mapping(
    deid: DeidSettings,
    data_dir: Path,
    config: ProjectDeid | None,
    project: str,
    mapping: Mapping[str, str],
) -> MappingUpload:
    """Add a validated mapping (see ``pseudonyms.mapping_from_*``) to ``project``'s vault.

    Raises
    ------
    PseudonymError
        The project is not de-identified with the ``mapping`` scheme, or the mapping is empty.
    VaultError
        An entry contradicts a stored one (nothing is stored).
    VaultKeyError
        The vault cannot be opened.
    """
    if config is None:
        raise PseudonymError(f"project {project} is not de-identified")
    if config.pseudonym.scheme is not PseudonymScheme.MAPPING:
        raise PseudonymError(f"project {project} does not use the 'mapping' pseudonym scheme")
    if not mapping:
        raise PseudonymError("the mapping has no entry")
    with open_vault(deid, data_dir) as vault:
        added = vault.add_mappings(project, mapping)
        return MappingUpload(project, added, vault.mapping_count(project))
