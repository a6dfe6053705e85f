"""Options of authentication, OIDC and the audit trail (the ``auth`` block of the config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Symmetric algorithms are refused outright: with a JWKS of public keys an HS256 token would
# be "signed" with a public key anyone has (the HS/RS confusion attack).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class OidcSettings(BaseModel):
    """An OIDC issuer whose bearer tokens dicomgate accepts."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str = Field(pattern=r"^https?://")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"], min_length=1)
    username_claim: str = "preferred_username"
    roles_claim: str = "groups"
    admin_role: str = "dicomgate-admin"
    reidentify_role: str = "dicomgate-reidentify"
    leeway_seconds: int = Field(default=30, ge=0, le=600)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(f"not allowed (asymmetric algorithms only): {', '.join(bad)}")
        return value


class AuthSettings(BaseModel):
    """Who may call dicomgate, and where the audit trail lives."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    admin_password: str | None = Field(default=None, min_length=12)
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    cookie_secure: bool = True
    oidc: OidcSettings | None = None
    audit_database_url: str | None = None
