"""De-identification settings: the per-project block and the site-wide vault options.

Both are plain pydantic models validated when the settings load, so a bad profile, an
unreadable profile or mapping file, or a pseudonym scheme missing its input fails at start
with the offending key named (``projects.1.deid.profile.dates: ...``). Nothing here
touches the archive; the composition root turns these into a vault and per-project keys.

Example (YAML, inside one entry of ``projects``)::

    deid:
      profile: {name: lung, options: [clean_descriptors], dates: shift,
                birth_date: first_day_of_year}     # or profile_file: lung-profile.yaml
      pseudonym: {scheme: keyed, prefix: "LUNG-"}  # keyed | sequential | mapping
      identity_check: hold                         # hold | off
"""

from __future__ import annotations

import enum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from dicomgate.deid.errors import ProfileError, PseudonymError, VaultKeyError
from dicomgate.deid.profile import Profile, load_profile
from dicomgate.deid.pseudonyms import mapping_from_csv
from dicomgate.deid.vault import IdentityVault
from dicomgate.deid.vaultkey import VaultKey

_LABEL = r"^[A-Za-z0-9_.\- ]*$"


class PseudonymScheme(enum.StrEnum):
    """How a new subject's pseudonym is made (the same subject keeps it forever)."""

    KEYED = "keyed"  # HMAC of the normalised identity, component hashes kept for linkage
    SEQUENTIAL = "sequential"  # prefix + per-project counter: SUBJ-0001
    MAPPING = "mapping"  # looked up by Patient ID: a mapping uploaded to the vault, or a CSV


class IdentityCheck(enum.StrEnum):
    """What happens when an import's confirmed identity contradicts the headers."""

    HOLD = "hold"  # the session is held with reason identity_mismatch and both values
    OFF = "off"  # confirmed identities are ignored


class PseudonymConfig(BaseModel):
    """The pseudonym scheme of one project."""

    model_config = ConfigDict(extra="forbid")

    scheme: PseudonymScheme = PseudonymScheme.SEQUENTIAL
    prefix: str = Field(default="SUBJ-", max_length=32, pattern=_LABEL)
    width: int = Field(default=4, ge=1, le=12, description="digits of a sequential pseudonym")
    length: int = Field(default=16, ge=8, le=48, description="hex digits of a keyed pseudonym")
    mapping_file: Path | None = None
    _mapping: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _load_mapping(self) -> PseudonymConfig:
        # Without mapping_file the mapping is uploaded (REST or CLI) into the vault.
        if self.mapping_file is not None:
            self._mapping = _read_mapping(self.mapping_file)
        return self

    @property
    def mapping(self) -> dict[str, str]:
        """Return the Patient ID -> pseudonym mapping read from ``mapping_file``."""
        return dict(self._mapping)


def _read_mapping(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"mapping_file: cannot read {path}: {exc.strerror}") from None
    try:
        return mapping_from_csv(text)
    except PseudonymError as exc:
        raise ValueError(f"mapping_file: {exc}") from None


class ProjectDeid(BaseModel):
    """De-identification of one project: profile, pseudonyms, identity check.

    The profile carries the options, the date policy (``dates``), the birth-date rule
    (``birth_date``), the burned-in policy and the pixel masks (see
    :mod:`dicomgate.deid.profile`).
    """

    model_config = ConfigDict(extra="forbid")

    profile: Profile | None = None
    profile_file: Path | None = None
    pseudonym: PseudonymConfig = Field(default_factory=PseudonymConfig)
    identity_check: IdentityCheck = IdentityCheck.HOLD

    @field_validator("identity_check", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as false and `on` as true.
        return {False: "off", True: "hold"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_profile(self) -> ProjectDeid:
        if self.profile is not None and self.profile_file is not None:
            raise ValueError("profile, profile_file: give one, not both")
        if self.profile is None and self.profile_file is None:
            raise ValueError("profile: required (a mapping, {} for the Basic Profile)")
        if self.profile_file is not None:
            self.profile = read_profile_file(self.profile_file)
        return self

    @property
    def effective_profile(self) -> Profile:
        """Return the validated profile (inline or read from ``profile_file``)."""
        assert self.profile is not None  # guaranteed by the validator
        return self.profile


def read_profile_file(path: Path) -> Profile:
    """Read and validate a profile YAML file; errors name the file and the key.

    Raises
    ------
    ValueError
        When the file is unreadable, not YAML, not a mapping or not a valid profile.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"profile_file: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"profile_file: {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"profile_file: {path} must hold a mapping")
    try:
        return load_profile(data)
    except ProfileError as exc:
        raise ValueError(f"profile_file: {path}: {exc}") from None


class DeidSettings(BaseModel):
    """Site-wide de-identification options: where the identity vault is, its key, originals.

    The vault key is never in the config or the main database: it is read at start from
    ``vault_key_file`` or, when that is not set, from the environment variable named by
    ``vault_key_env`` (32 bytes as hex or base64).
    """

    model_config = ConfigDict(extra="forbid")

    vault_path: Path | None = None
    vault_key_file: Path | None = None
    vault_key_env: str = Field(default="DICOMGATE_VAULT_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    date_offset_range: tuple[int, int] = (-365, 365)
    identified_project: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    reidentify_actors: list[str] = Field(default_factory=list)

    @field_validator("date_offset_range")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if low > high or low == high == 0 or max(abs(low), abs(high)) > 36600:
            raise ValueError("need [low, high] with low <= high, not both 0, within 100 years")
        return value


def vault_path(deid: DeidSettings, data_dir: Path) -> Path:
    """Return the identity vault's file: ``deid.vault_path`` or one inside ``data_dir``."""
    return deid.vault_path or data_dir / "identity-vault.sqlite3"


def load_vault_key(deid: DeidSettings) -> VaultKey:
    """Read the vault key from ``deid.vault_key_file``, else from ``deid.vault_key_env``.

    Raises
    ------
    VaultKeyError
        Naming the setting that holds no usable key.
    """
    try:
        if deid.vault_key_file is not None:
            return VaultKey.from_file(deid.vault_key_file)
        return VaultKey.from_env(deid.vault_key_env)
    except VaultKeyError as exc:
        key = "deid.vault_key_file" if deid.vault_key_file else "deid.vault_key_env"
        raise VaultKeyError(f"{key}: {exc}") from None


def open_vault(deid: DeidSettings, data_dir: Path) -> IdentityVault:
    """Open (creating if needed) the identity vault with its key; a wrong key fails here."""
    path = vault_path(deid, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = load_vault_key(deid)
    try:
        return IdentityVault(path, key, deid.date_offset_range)
    except VaultKeyError as exc:
        name = "deid.vault_key_file" if deid.vault_key_file else "deid.vault_key_env"
        raise VaultKeyError(f"{name}: {exc}") from None
