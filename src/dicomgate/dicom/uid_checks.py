"""UID checks remembered instead of repeated for every UID object made.

Making a ``pydicom.uid.UID`` checks the string against a regular expression (pydicom's "UI"
validator), and pynetdicom checks it twice more (its own "UI" validator, which makes the UID
again, and ``UID.is_valid``). Decoding an A-ASSOCIATE-RQ and building the answer makes every
proposed UID several times over: for ``storescu``'s 128 presentation contexts that was half
of a receiving process's CPU for an association that stores one small instance, and eight
times what it spent on the store. Peers propose the same few hundred UIDs in every
association, and each check's answer depends on the string alone (pynetdicom's also on its
conformance switch, which is part of the key), so the answers are kept in bounded caches.
The checks and what they decide are unchanged: an invalid UID is refused or warned about as
before, every time, because the warning is given by the caller from the remembered answer.

Importing this module installs the caches (``reactor`` does, so every process that accepts
or requests associations has them).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydicom import valuerep
from pydicom.uid import UID
from pynetdicom import _config

CACHED = 4096
"""UIDs remembered per check; a full cache forgets the least recently used."""

Check = Callable[..., tuple[bool, str]]


def _no_context() -> None:
    return None


def conformance_switch() -> bool:
    """Return pynetdicom's UID conformance switch, which its UID check's answer depends on."""
    return bool(_config.ENFORCE_UID_CONFORMANCE)


class RememberedCheck:
    """A validator (pydicom's ``check(vr, value)``, pynetdicom's ``check(value)``) remembered.

    Parameters
    ----------
    check
        The library's check; its answer depends on its arguments and on ``context()``.
    context
        Read at each call and made part of the key (pynetdicom's conformance switch).
    """

    def __init__(self, check: Check, context: Callable[[], object] = _no_context) -> None:
        self.__wrapped__ = check
        self._context = context
        self._cached = lru_cache(maxsize=CACHED)(self._check)

    def _check(self, _context: object, *args: Any) -> tuple[bool, str]:
        return self.__wrapped__(*args)

    def __call__(self, *args: Any) -> tuple[bool, str]:
        """Return ``(valid, reason)`` as the library's check does."""
        try:
            return self._cached(self._context(), *args)
        except TypeError:  # a value that cannot be a key (a list): checked as before
            return self.__wrapped__(*args)

    def cache_info(self) -> Any:
        """Return the cache's ``functools`` statistics."""
        return self._cached.cache_info()


def _install() -> None:
    """Put the remembering checks in place of pydicom's and pynetdicom's (once)."""
    if isinstance(valuerep.VALIDATORS["UI"], RememberedCheck):
        return
    valuerep.VALIDATORS["UI"] = RememberedCheck(valuerep.VALIDATORS["UI"])
    _config.VALIDATORS["UI"] = RememberedCheck(_config.VALIDATORS["UI"], conformance_switch)
    is_valid = lru_cache(maxsize=CACHED)(UID.is_valid.fget)  # type: ignore[attr-defined]
    UID.is_valid = property(is_valid)  # type: ignore[method-assign,assignment]


_install()
