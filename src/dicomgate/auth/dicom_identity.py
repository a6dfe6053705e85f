"""DICOM user identity negotiation (PS3.7 D.3.3.7): who is behind an association, if anyone.

The requestor may send a user name and password (type 2) or a JSON Web Token (type 5, when
``auth.oidc`` is configured); both are verified like their HTTP counterparts and map to a
``Caller`` whose projects narrow what the peer's association may see. A user name alone
(type 1), Kerberos (3) and SAML (4) cannot be verified here: they are ignored where identity is
optional (the association is the peer's alone, as without one) and refused where it is
required. A wrong password or token is always refused: a caller who claims to be someone and
fails is not let through as the bare AE.
"""

from __future__ import annotations

from typing import Any

from dicomgate.auth import users
from dicomgate.auth.oidc import OidcVerifier
from dicomgate.auth.roles import Caller
from dicomgate.auth.settings import UserIdentityPolicy
from dicomgate.db import Database
from dicomgate.errors import UnauthenticatedError

USERNAME, USERNAME_PASSCODE, KERBEROS, SAML, JWT = 1, 2, 3, 4, 5


def _text(value: Any) -> str:
    raw = bytes(value or b"")
    try:
        return raw.decode("utf-8").strip("\x00 ")
    except UnicodeDecodeError:
        raise UnauthenticatedError("user identity is not UTF-8") from None


class IdentityVerifier:
    """Turns a User Identity Negotiation item into a caller, or refuses it.

    Parameters
    ----------
    db
        The index database (local users and their project roles); ``None``: no local users.
    oidc
        The OIDC verifier for JWTs; ``None``: JWTs cannot be verified.
    """

    def __init__(self, db: Database | None, oidc: OidcVerifier | None) -> None:
        self.db = db
        self.oidc = oidc

    def verify(self, item: Any, policy: UserIdentityPolicy) -> Caller | None:
        """Return the verified caller, or ``None`` for an association with no usable identity.

        Parameters
        ----------
        item
            pynetdicom's ``UserIdentityNegotiation`` of the request (``None``: none sent).
        policy
            The peer's policy: under ``required`` an unverifiable identity is refused too.

        Raises
        ------
        UnauthenticatedError
            When the identity is wrong, or missing/unverifiable and required.
        """
        kind = int(item.user_identity_type) if item is not None else 0
        if kind == USERNAME_PASSCODE:
            return self._password(_text(item.primary_field), _text(item.secondary_field))
        if kind == JWT and self.oidc is not None:
            return self.oidc.caller(_text(item.primary_field))
        if policy is UserIdentityPolicy.REQUIRED:
            missing = "no user identity" if item is None else f"user identity type {kind}"
            raise UnauthenticatedError(f"{missing}: a user name and password or a JWT is required")
        return None

    def _password(self, name: str, password: str) -> Caller:
        if self.db is None or not name:
            raise UnauthenticatedError("wrong user name or password")
        with self.db.reader() as session:
            user = users.authenticate(session, name, password)
            if user is None:
                raise UnauthenticatedError("wrong user name or password")
            return users.caller_for(session, user, "dicom")
