"""Options of authentication, OIDC, DICOM peers, TLS and the audit trail (the ``auth`` block)."""

from __future__ import annotations

import enum
import ipaddress
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class DicomOperation(enum.StrEnum):
    """What a DICOM peer may ask of dicomgate."""

    ECHO = "echo"
    STORE = "store"
    FIND = "find"
    MOVE = "move"
    GET = "get"


class UserIdentityPolicy(enum.StrEnum):
    """Whether an association must carry a DICOM user identity (PS3.7 D.3.3.7)."""

    OPTIONAL = "optional"  # verified when sent (a wrong password is refused), else the AE alone
    REQUIRED = "required"  # an association without a verified user name/password or JWT is refused


ALL_PROJECTS = "*"

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


class DicomPeerSettings(BaseModel):
    """A known DICOM application entity: who it is, where it calls from, what it may do."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(min_length=1, max_length=16)
    hosts: list[str] = Field(min_length=1)
    operations: list[DicomOperation] = Field(
        default_factory=lambda: [DicomOperation.ECHO, DicomOperation.STORE]
    )
    projects: list[str] = Field(default_factory=list)
    user_identity: UserIdentityPolicy | None = None

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        if not value.strip() or "\\" in value or not value.isascii():
            raise ValueError(f"invalid AE title {value!r}: 1-16 ASCII characters, no backslash")
        return value.strip()

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                if not _HOSTNAME.match(host):
                    msg = f"{host!r} is neither an address, a CIDR nor a host name"
                    raise ValueError(msg) from None
        return value

    @field_validator("projects")
    @classmethod
    def _check_projects(cls, value: list[str]) -> list[str]:
        bad = [
            p for p in value if p != ALL_PROJECTS and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", p)
        ]
        if bad:
            raise ValueError(f"invalid project id: {', '.join(bad)}")
        return value


class DicomTlsSettings(BaseModel):
    """The DICOM TLS listener: client certificates signed by ``ca_certificates`` required."""

    model_config = ConfigDict(extra="forbid")

    port: int = Field(default=2762, ge=0, le=65535)
    certificate: Path
    key: Path
    ca_certificates: Path
    plain_listener: bool = True


class AuthSettings(BaseModel):
    """Who may call dicomgate, and where the audit trail lives."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    admin_password: str | None = Field(default=None, min_length=12)
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    cookie_secure: bool = True
    oidc: OidcSettings | None = None
    audit_database_url: str | None = None
    audit_reads_wait_for_disk: bool = False
    dicom_peers: list[DicomPeerSettings] = Field(default_factory=list)
    dicom_open: bool | None = None
    dicom_user_identity: UserIdentityPolicy = UserIdentityPolicy.OPTIONAL
    dicom_tls: DicomTlsSettings | None = None
    https_certificate: Path | None = None
    https_key: Path | None = None

    @model_validator(mode="after")
    def _https_pair(self) -> AuthSettings:
        if (self.https_certificate is None) != (self.https_key is None):
            raise ValueError("https_certificate and https_key are set together or not at all")
        return self

    @property
    def receiver_open(self) -> bool:
        """Return whether unknown calling AEs are accepted (default: when no peer is listed)."""
        return not self.dicom_peers if self.dicom_open is None else self.dicom_open
