"""Errors raised by the de-identification engine and the identity vault.

::

    DeidError                   base: anything this package refuses to do
     ├── ProfileError           a profile mapping is invalid (names the offending key)
     ├── KeysError              the per-subject keys given to ``apply`` are unusable
     ├── PseudonymError         a pseudonym cannot be produced (e.g. not in the mapping)
     ├── IdentityError          an operator-confirmed identity is malformed (names the field)
     └── VaultError             the identity vault cannot do what was asked
          └── VaultKeyError     the vault key is missing, malformed or does not open the vault

The lead engineer hooks ``DeidError`` into the project exception tree; until then callers
catch these plain exceptions.
"""

from __future__ import annotations


class DeidError(Exception):
    """Base class of every de-identification error."""


class ProfileError(DeidError):
    """A de-identification profile failed validation."""


class KeysError(DeidError):
    """The keys passed to ``apply`` cannot be used."""


class PseudonymError(DeidError):
    """A pseudonym could not be produced."""


class IdentityError(DeidError, ValueError):
    """An operator-confirmed identity is malformed; the message names the field."""


class VaultError(DeidError):
    """The identity vault failed an operation."""


class VaultKeyError(VaultError):
    """The vault key is missing, malformed, or does not open this vault."""
