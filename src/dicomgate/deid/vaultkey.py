"""The identity vault key: 32 bytes from a file or an environment variable the caller names."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dicomgate.deid.errors import VaultKeyError

KEY_BYTES = 32


def _derive(master: bytes, purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose)
    return hkdf.derive(master)


def _decode(text: str) -> bytes:
    text = text.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VaultKeyError("vault key: expected 32 bytes as hex or base64") from None


class VaultKey:
    """The 32-byte vault master key and the two keys derived from it (HKDF-SHA-256).

    Parameters
    ----------
    master
        Exactly 32 random bytes (e.g. ``secrets.token_bytes(32)``).
    """

    __slots__ = ("encryption", "lookup")

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise VaultKeyError(f"vault key: need {KEY_BYTES} bytes, got {len(master)}")
        self.encryption = _derive(master, b"dicomgate vault aes-gcm")
        self.lookup = _derive(master, b"dicomgate vault lookup hmac")

    def __repr__(self) -> str:
        return "VaultKey(<secret>)"

    @classmethod
    def from_file(cls, path: str | Path) -> VaultKey:
        """Read the key from a file: 32 raw bytes, or 64 hex digits, or base64 text."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise VaultKeyError(f"vault key file unreadable: {exc.strerror}") from None
        if len(data) == KEY_BYTES:
            return cls(data)
        return cls(_decode(data.decode("ascii", errors="replace")))

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> VaultKey:
        """Read the key (hex or base64) from the environment variable ``name``."""
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise VaultKeyError(f"vault key: environment variable {name} is not set")
        return cls(_decode(value))
