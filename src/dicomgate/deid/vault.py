"""The identity vault: its own SQLite file mapping pseudonyms to identities, encrypted at rest.

Every sensitive value (identity, date offset, original UID, per-import nominative data) is
AES-GCM encrypted with a random 96-bit nonce; the associated data binds each ciphertext to its
table, column and row key, so a value copied into another row fails to decrypt. Lookups use an
HMAC of the normalised identity (keyed with a key derived from the vault key), so finding a
subject never decrypts the table. A canary encrypted at creation makes a wrong key fail at open.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomgate.deid.errors import VaultError, VaultKeyError
from dicomgate.deid.pseudonyms import Identity, normalised_components, sequential_pseudonym
from dicomgate.deid.vaultkey import VaultKey

CANARY = b"dicomgate identity vault v1"
NONCE_BYTES = 12
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    project TEXT NOT NULL, pseudonym TEXT NOT NULL, lookup TEXT NOT NULL,
    identity BLOB NOT NULL, date_offset BLOB NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (project, pseudonym), UNIQUE (project, lookup));
CREATE TABLE IF NOT EXISTS uid_map (
    project TEXT NOT NULL, new_uid TEXT NOT NULL, original_lookup TEXT NOT NULL,
    original BLOB NOT NULL, PRIMARY KEY (project, new_uid));
CREATE TABLE IF NOT EXISTS imports (
    project TEXT NOT NULL, pseudonym TEXT NOT NULL, import_ref TEXT NOT NULL,
    data BLOB NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (project, import_ref));
CREATE TABLE IF NOT EXISTS aliases (
    project TEXT NOT NULL, lookup TEXT NOT NULL, pseudonym TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (project, lookup));
CREATE TABLE IF NOT EXISTS mappings (
    project TEXT NOT NULL, lookup TEXT NOT NULL, pseudonym TEXT NOT NULL, original BLOB NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (project, lookup), UNIQUE (project, pseudonym));
CREATE TABLE IF NOT EXISTS sequences (project TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS project_keys (project TEXT PRIMARY KEY, secret BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS access_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, project TEXT NOT NULL, pseudonym TEXT NOT NULL, purpose TEXT NOT NULL);
"""


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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class IdentityVault:
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
        self._aead = AESGCM(key.encryption)
        self._lookup_key = key.lookup
        self._range = (low, high)
        self._db = sqlite3.connect(os.fspath(path), isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._check_canary()

    # -- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> IdentityVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _seal(self, value: bytes, *aad: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value, "\x1f".join(aad).encode())

    def _open(self, blob: bytes, *aad: str) -> bytes:
        try:
            return self._aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], "\x1f".join(aad).encode()
            )
        except InvalidTag:
            raise VaultKeyError("vault value does not decrypt (wrong key or moved value)") from None

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._lookup_key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()

    def _check_canary(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'canary'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta VALUES ('canary', ?)", (self._seal(CANARY, "meta", "canary"),)
            )
            return
        try:
            ok = self._open(row[0], "meta", "canary") == CANARY
        except VaultKeyError:
            ok = False
        if not ok:
            self.close()
            raise VaultKeyError("the vault key does not open this vault (canary check failed)")

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
                (project, self._identity_lookup(project, identity), pseudonym, _now()),
            )
            return True

    def get_or_create_subject(
        self,
        project: str,
        identity: Identity,
        pseudonym: str | None = None,
        prefix: str = "SUBJ-",
        width: int = 4,
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
            return SubjectKeys(name, offset)

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
                    _now(),
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
                 self._seal(original.encode(), "mappings", project, pseudonym), _now()),
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
            (project, pseudonym, import_ref, sealed, _now()),
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
            (_now(), actor, action, project, pseudonym, purpose),
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
