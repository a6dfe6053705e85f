"""The identity vault: its own SQLite file mapping pseudonyms to identities, encrypted at rest.

Every sensitive value (identity, date offset, original UID, per-import nominative data) is
AES-GCM encrypted with a random 96-bit nonce; the associated data binds each ciphertext to its
table, column and row key, so a value copied into another row fails to decrypt. Lookups use an
HMAC of the normalised identity (keyed with a key derived from the vault key), so finding a
subject never decrypts the table. A canary encrypted at creation makes a wrong key fail at open
(the sealing and the schema are in :mod:`dicomgate.deid.vault_store`).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from dicomgate.deid.errors import VaultError
from dicomgate.deid.pseudonyms import Identity, normalised_components, sequential_pseudonym
from dicomgate.deid.vault_store import SealedStore, now
from dicomgate.deid.vaultkey import VaultKey


class SubjectKeys(NamedTuple):
    """A subject's pseudonym and date offset (unpacks as ``(pseudonym, offset)``)."""

    pseudonym: str
    date_offset_days: int


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One re-identification call as recorded in the access log."""

    at: str
    actor: str
    action: str
    project: str
    pseudonym: str
    purpose: str


class IdentityVault(SealedStore):
    """Pseudonym <-> identity store; open with the key the caller loaded (see VaultKey).

    Parameters
    ----------
    path
        The vault's own SQLite file (created if missing).
    key
        The vault key.
    offset_range
        Inclusive range of random per-subject date offsets in days (0 is never drawn).
    """

    def __init__(
        self, path: str | Path, key: VaultKey, offset_range: tuple[int, int] = (-365, 365)
    ) -> None:
        low, high = offset_range
        if low > high or (low == high == 0):
            raise VaultError("offset_range: need low <= high and a non-zero value possible")
        self._range = (low, high)
        super().__init__(path, key)

    def _identity_lookup(self, project: str, identity: Identity) -> str:
        parts = normalised_components(identity)
        return self._mac("identity", project, *(parts[k] for k in sorted(parts)))

    # -- subjects -------------------------------------------------------------------------
    def find_subject(self, project: str, identity: Identity) -> SubjectKeys | None:
        """Return the subject's pseudonym and offset in ``project``, or ``None``.

        An identity a person linked to a subject (:meth:`link_identity`) finds that subject.
        """
        lookup = self._identity_lookup(project, identity)
        row = self._db.execute(
            "SELECT pseudonym FROM subjects WHERE project = ? AND lookup = ?"
            " UNION ALL SELECT pseudonym FROM aliases WHERE project = ? AND lookup = ?",
            (project, lookup, project, lookup),
        ).fetchone()
        return None if row is None else self.subject_by_pseudonym(project, row[0])

    def subject_by_pseudonym(self, project: str, pseudonym: str) -> SubjectKeys | None:
        """Return the keys of the subject ``pseudonym`` (no identity is decrypted), or None."""
        row = self._db.execute(
            "SELECT date_offset FROM subjects WHERE project = ? AND pseudonym = ?",
            (project, pseudonym),
        ).fetchone()
        if row is None:
            return None
        offset = self._open(row[0], "subjects", "date_offset", project, pseudonym)
        return SubjectKeys(pseudonym, int(offset))

    def link_identity(self, project: str, identity: Identity, pseudonym: str) -> bool:
        """Let ``identity`` find the subject ``pseudonym`` from now on (a person decided so).

        Used when a data manager resolves an identity mismatch: the headers' identity joins
        the subject the session was assigned to, so its follow-up exams do too.

        Returns
        -------
        bool
            False when the identity already finds a subject (nothing is changed).

        Raises
        ------
        VaultError
            There is no subject ``pseudonym`` in ``project``.
        """
        with self._transaction():
            if self.subject_by_pseudonym(project, pseudonym) is None:
                raise VaultError(f"no subject {pseudonym} in project {project}")
            if self.find_subject(project, identity) is not None:
                return False
            self._db.execute(
                "INSERT INTO aliases VALUES (?, ?, ?, ?)",
                (project, self._identity_lookup(project, identity), pseudonym, now()),
            )
            return True

    def get_or_create_subject(
        self,
        project: str,
        identity: Identity,
        pseudonym: str | None = None,
        prefix: str = "SUBJ-",
        width: int = 4,
        component_hashes: Mapping[str, str] | None = None,
    ) -> SubjectKeys:
        """Return the subject's keys, creating them on first sight.

        Parameters
        ----------
        project
            The project id; the same person gets unrelated keys in another project.
        identity
            The confirmed identity.
        pseudonym
            The pseudonym to assign when the subject is new (from a scheme of
            :mod:`dicomgate.deid.pseudonyms`); default ``prefix`` + the project sequence.
        prefix, width
            The sequential scheme's prefix and digits (``SUBJ-0001``).
        component_hashes
            Keyed hashes of the identity's components (``keyed_pseudonym``), kept with a new
            subject for record linkage (:meth:`linked_subjects`).

        Returns
        -------
        SubjectKeys
            ``(pseudonym, date_offset_days)``, stable per subject per project.
        """
        with self._transaction():
            found = self.find_subject(project, identity)
            if found is not None:
                return found
            name = pseudonym or sequential_pseudonym(prefix, self._bump(project), width)
            offset = self._draw_offset()
            self._insert_subject(project, name, identity, offset)
            self._db.executemany(
                "INSERT OR IGNORE INTO linkage VALUES (?, ?, ?, ?)",
                [(project, name, c, h) for c, h in (component_hashes or {}).items()],
            )
            return SubjectKeys(name, offset)

    def linked_subjects(
        self, project: str, component_hashes: Mapping[str, str]
    ) -> dict[str, list[str]]:
        """Return the subjects sharing a component hash: pseudonym -> matching components.

        Record linkage without decrypting anything: e.g. the same last name and birth date
        under another spelling of the first name. Only pseudonyms and component names leave.
        """
        found: dict[str, list[str]] = {}
        for component, digest in sorted(component_hashes.items()):
            rows = self._db.execute(
                "SELECT pseudonym FROM linkage WHERE project = ? AND component = ? AND hash = ?",
                (project, component, digest),
            )
            for (pseudonym,) in rows:
                found.setdefault(pseudonym, []).append(component)
        return found

    def _draw_offset(self) -> int:
        low, high = self._range
        while True:
            offset = low + secrets.randbelow(high - low + 1)
            if offset:
                return offset

    def _insert_subject(self, project: str, name: str, identity: Identity, offset: int) -> None:
        try:
            self._db.execute(
                "INSERT INTO subjects VALUES (?, ?, ?, ?, ?, ?)",
                (
                    project,
                    name,
                    self._identity_lookup(project, identity),
                    self._seal(
                        json.dumps(identity.to_dict()).encode(),
                        "subjects",
                        "identity",
                        project,
                        name,
                    ),
                    self._seal(str(offset).encode(), "subjects", "date_offset", project, name),
                    now(),
                ),
            )
        except sqlite3.IntegrityError:
            raise VaultError(f"pseudonym {name} already used in project {project}") from None

    def reidentify(self, project: str, pseudonym: str, actor: str, purpose: str = "") -> Identity:
        """Return the identity behind ``pseudonym``; the call is written to the access log."""
        self._log(actor, "reidentify", project, pseudonym, purpose)
        row = self._db.execute(
            "SELECT identity FROM subjects WHERE project = ? AND pseudonym = ?",
            (project, pseudonym),
        ).fetchone()
        if row is None:
            raise VaultError(f"no subject {pseudonym} in project {project}")
        plain = self._open(row[0], "subjects", "identity", project, pseudonym)
        return Identity(**json.loads(plain))

    # -- pseudonym mappings given by the study (scheme c) --------------------------------------
    def add_mappings(self, project: str, mapping: Mapping[str, str]) -> int:
        """Store Patient ID -> pseudonym entries of a study's mapping; return how many are new.

        An entry already stored identically is skipped; the whole call is one transaction.

        Raises
        ------
        VaultError
            An entry gives another pseudonym to a Patient ID already mapped, or a pseudonym
            already mapped to another Patient ID (nothing is stored then).
        """
        added = 0
        with self._transaction():
            for original, pseudonym in mapping.items():
                added += self._add_mapping(project, original.strip(), pseudonym)
        return added

    def _add_mapping(self, project: str, original: str, pseudonym: str) -> int:
        lookup = self._mac("mapping", project, original)
        row = self._db.execute(
            "SELECT pseudonym FROM mappings WHERE project = ? AND lookup = ?", (project, lookup)
        ).fetchone()
        if row is not None:
            if row[0] != pseudonym:
                raise VaultError(f"a subject mapped to {row[0]} would get {pseudonym}")
            return 0
        try:
            self._db.execute(
                "INSERT INTO mappings VALUES (?, ?, ?, ?, ?)",
                (project, lookup, pseudonym,
                 self._seal(original.encode(), "mappings", project, pseudonym), now()),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise VaultError(f"pseudonym {pseudonym} is mapped to another subject") from None
        return 1

    def mapped_pseudonym(self, project: str, original: str) -> str | None:
        """Return the pseudonym a stored mapping gives to Patient ID ``original``, or None."""
        row = self._db.execute(
            "SELECT pseudonym FROM mappings WHERE project = ? AND lookup = ?",
            (project, self._mac("mapping", project, original.strip())),
        ).fetchone()
        return None if row is None else str(row[0])

    def mapping_count(self, project: str) -> int:
        """Return how many mapping entries are stored for ``project``."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM mappings WHERE project = ?", (project,)
        ).fetchone()
        return int(row[0])

    # -- sequences, UIDs, imports, log ------------------------------------------------------
    def next_sequence(self, project: str) -> int:
        """Return the next counter value of ``project`` (1, 2, ...) for sequential pseudonyms."""
        with self._transaction():
            return self._bump(project)

    def _bump(self, project: str) -> int:
        self._db.execute(
            "INSERT INTO sequences VALUES (?, 1)"
            " ON CONFLICT(project) DO UPDATE SET next = next + 1",
            (project,),
        )
        row = self._db.execute(
            "SELECT next FROM sequences WHERE project = ?", (project,)
        ).fetchone()
        return int(row[0])

    def record_uid_mapping(self, project: str, original: str, new: str) -> None:
        """Store ``original`` (encrypted) under its replacement ``new``; idempotent."""
        self._db.execute(
            "INSERT OR IGNORE INTO uid_map VALUES (?, ?, ?, ?)",
            (
                project,
                new,
                self._mac("uid", project, original),
                self._seal(original.encode(), "uid_map", project, new),
            ),
        )

    def record_uid_mappings(self, project: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Store many ``(original, new)`` UID pairs in one transaction; idempotent."""
        with self._transaction():
            for original, new in pairs:
                self.record_uid_mapping(project, original, new)

    def project_secret(self, project: str) -> bytes:
        """Return the project's UID/pseudonym secret, drawing 32 random bytes on first use.

        The secret never leaves the vault except to key ``remap_uid`` and keyed pseudonyms:
        the same project always gets the same UIDs, another project unrelated ones.
        """
        with self._transaction():
            row = self._db.execute(
                "SELECT secret FROM project_keys WHERE project = ?", (project,)
            ).fetchone()
            if row is not None:
                return self._open(row[0], "project_keys", project)
            secret = secrets.token_bytes(32)
            self._db.execute(
                "INSERT INTO project_keys VALUES (?, ?)",
                (project, self._seal(secret, "project_keys", project)),
            )
            return secret

    def original_uid(self, project: str, new: str, actor: str) -> str | None:
        """Return the original UID behind ``new`` (a logged re-identification), or ``None``."""
        self._log(actor, "original_uid", project, new, "")
        row = self._db.execute(
            "SELECT original FROM uid_map WHERE project = ? AND new_uid = ?", (project, new)
        ).fetchone()
        return None if row is None else self._open(row[0], "uid_map", project, new).decode()

    def record_import(
        self, project: str, pseudonym: str, import_ref: str, data: Mapping[str, str]
    ) -> None:
        """Keep the nominative data of one import (e.g. original name, IDs, accession)."""
        sealed = self._seal(json.dumps(dict(data)).encode(), "imports", project, import_ref)
        self._db.execute(
            "INSERT OR REPLACE INTO imports VALUES (?, ?, ?, ?, ?)",
            (project, pseudonym, import_ref, sealed, now()),
        )

    def import_data(self, project: str, import_ref: str, actor: str) -> dict[str, str]:
        """Return the nominative data of one import (a logged re-identification)."""
        row = self._db.execute(
            "SELECT pseudonym, data FROM imports WHERE project = ? AND import_ref = ?",
            (project, import_ref),
        ).fetchone()
        if row is None:
            raise VaultError(f"no import {import_ref} in project {project}")
        self._log(actor, "import_data", project, row[0], import_ref)
        data: dict[str, str] = json.loads(self._open(row[1], "imports", project, import_ref))
        return data

    def _log(self, actor: str, action: str, project: str, pseudonym: str, purpose: str) -> None:
        self._db.execute(
            "INSERT INTO access_log (at, actor, action, project, pseudonym, purpose)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (now(), actor, action, project, pseudonym, purpose),
        )

    def record_refusal(self, actor: str, project: str, pseudonym: str, purpose: str) -> None:
        """Record a re-identification call that was refused (no permission)."""
        self._log(actor, "reidentify_refused", project, pseudonym, purpose)

    def access_log(self) -> list[AccessEntry]:
        """Return every recorded re-identification call, oldest first."""
        rows = self._db.execute(
            "SELECT at, actor, action, project, pseudonym, purpose FROM access_log ORDER BY id"
        ).fetchall()
        return [AccessEntry(*row) for row in rows]
