"""The sealed SQLite store under the identity vault: schema, AES-GCM sealing, keyed lookups.

Every sensitive value is AES-GCM encrypted with a random 96-bit nonce; the associated data
binds each ciphertext to its table, column and row key, so a value copied into another row
fails to decrypt. Lookups are HMACs keyed with a key derived from the vault key. A canary
encrypted at creation makes a wrong key fail at open. :class:`~dicomgate.deid.vault.
IdentityVault` builds the domain (subjects, mappings, UIDs, imports, access log) on it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomgate.deid.errors import VaultKeyError
from dicomgate.deid.vaultkey import VaultKey

CANARY = b"dicomgate identity vault v1"
NONCE_BYTES = 12
SCHEMA = """
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
CREATE TABLE IF NOT EXISTS linkage (
    project TEXT NOT NULL, pseudonym TEXT NOT NULL, component TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (project, pseudonym, component));
CREATE INDEX IF NOT EXISTS linkage_hash ON linkage (project, component, hash);
CREATE TABLE IF NOT EXISTS sequences (project TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS project_keys (project TEXT PRIMARY KEY, secret BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS access_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, project TEXT NOT NULL, pseudonym TEXT NOT NULL, purpose TEXT NOT NULL);
"""


def now() -> str:
    """Return the current UTC time as stored in the vault (ISO 8601, seconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class SealedStore:
    """An SQLite file opened with the vault key: sealing, keyed lookups, transactions."""

    def __init__(self, path: str | Path, key: VaultKey) -> None:
        self._aead = AESGCM(key.encryption)
        self._lookup_key = key.lookup
        self._db = sqlite3.connect(os.fspath(path), isolation_level=None)
        self._db.executescript(SCHEMA)
        self._check_canary()

    # -- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Self:
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
