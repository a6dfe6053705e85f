"""OIDC bearer tokens (Keycloak and others): signature from the issuer's JWKS, then the claims.

``iss``, ``aud``, ``exp`` and ``nbf`` are checked with a small leeway; only the configured
asymmetric algorithms are accepted, so ``alg=none`` and HS/RS confusion never verify. Roles come
from one claim: the admin role, the re-identify role, and ``<project>:<role>`` entries.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt

from dicomgate.auth.roles import Caller, Role
from dicomgate.auth.settings import OidcSettings
from dicomgate.errors import UnauthenticatedError

log = logging.getLogger(__name__)


def looks_like_jwt(token: str) -> bool:
    """Return True for a compact JWS (three base64url parts)."""
    return token.count(".") == 2 and not token.startswith("dg_")


class OidcVerifier:
    """Verifies bearer tokens of one issuer.

    Parameters
    ----------
    settings
        The issuer, audience, JWKS URL, algorithms and claim names.
    """

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=10)

    def claims(self, token: str) -> dict[str, Any]:
        """Return the verified claims of ``token``.

        Raises
        ------
        UnauthenticatedError
            When the token is malformed, signed by an unknown key or a refused algorithm,
            expired, not yet valid, or for another issuer or audience.
        """
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.settings.algorithms:
                raise UnauthenticatedError("token algorithm not allowed")
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=self.settings.algorithms,
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientError as exc:
            log.info("OIDC token refused: signing key not found (%s)", type(exc).__name__)
            raise UnauthenticatedError("token signed by an unknown key") from None
        except jwt.InvalidTokenError as exc:
            log.info("OIDC token refused: %s", type(exc).__name__)
            raise UnauthenticatedError(f"invalid token: {type(exc).__name__}") from None
        return claims

    def caller(self, token: str) -> Caller:
        """Return the caller a verified token acts as."""
        claims = self.claims(token)
        name = str(claims.get(self.settings.username_claim) or claims.get("sub") or "")
        if not name:
            raise UnauthenticatedError("token names no user")
        values = claims.get(self.settings.roles_claim) or []
        entries = [str(v).lstrip("/") for v in (values if isinstance(values, list) else [values])]
        roles: dict[str, Role] = {}
        for entry in entries:
            project, sep, role = entry.partition(":")
            if sep and role in Role.__members__.values():
                roles[project] = Role(role)
        return Caller(
            name=name,
            is_admin=self.settings.admin_role in entries,
            roles=roles,
            can_reidentify=self.settings.reidentify_role in entries,
            via="oidc",
        )
