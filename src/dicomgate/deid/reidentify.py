"""Re-identification: only callers holding the dedicated permission, every call recorded.

Authentication and project roles arrive with issue 8. Until then the permission is checked
through an explicit hook, a :data:`PermissionCheck` the caller passes in:

* the REST API passes :func:`deny_without_authentication`: there is no authenticated caller
  yet, so every HTTP call is refused (403) and recorded in the vault's access log;
* the CLI passes :func:`allow_listed` over ``deid.reidentify_actors`` from the config: the
  operator names themself with ``--actor``; this is a guard against mistakes, not
  authentication (whoever can read the vault key file can decrypt the vault anyway).

Issue 8 replaces the API's hook with a check of the caller's ``reidentify`` role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dicomgate.deid.pseudonyms import Identity
from dicomgate.deid.vault import IdentityVault
from dicomgate.errors import PermissionDeniedError

REIDENTIFY = "reidentify"
"""The dedicated permission; no other permission or role implies it."""

PermissionCheck = Callable[[str | None, str, str], bool]
"""``(actor, permission, project) -> allowed``."""


def deny_without_authentication(actor: str | None, permission: str, project: str) -> bool:
    """Refuse every call: no caller is authenticated before issue 8."""
    return False


def allow_listed(actors: Iterable[str]) -> PermissionCheck:
    """Return a check that grants :data:`REIDENTIFY` to the named actors only."""
    allowed = frozenset(a for a in actors if a)

    def check(actor: str | None, permission: str, project: str) -> bool:
        return permission == REIDENTIFY and actor is not None and actor in allowed

    return check


def reidentify(
    vault: IdentityVault,
    check: PermissionCheck,
    actor: str | None,
    project: str,
    pseudonym: str,
    purpose: str,
) -> Identity:
    """Return the identity behind ``pseudonym`` when ``actor`` may re-identify in ``project``.

    Both outcomes are written to the vault's access log (who, when, project, pseudonym,
    purpose), before the identity is read.

    Raises
    ------
    PermissionDeniedError
        The actor lacks the permission, or gave no purpose (recorded as refused).
    VaultError
        There is no such subject.
    """
    who = actor or "anonymous"
    if not purpose.strip() or not check(actor, REIDENTIFY, project):
        vault.record_refusal(who, project, pseudonym, purpose)
        raise PermissionDeniedError(
            "re-identification needs the 'reidentify' permission and a stated purpose"
        )
    return vault.reidentify(project, pseudonym, actor=who, purpose=purpose)
