"""One typed settings object, built once from a YAML file and ``DICOMGATE_*`` variables.

Precedence (highest first): environment variables, the YAML file, the defaults below.
Every option is documented in ``docs/config.example.yaml``.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dicomgate.access.dicomweb.config import DicomwebSettings
from dicomgate.access.dimse.config import QueryRetrieveSettings
from dicomgate.auth.settings import AuthSettings
from dicomgate.deid.config import DeidSettings, ProjectDeid
from dicomgate.dicom.nodes import PacsSettings
from dicomgate.duplicate_policy import DuplicatePolicy
from dicomgate.errors import ConfigError
from dicomgate.jobs.config import JobsConfig
from dicomgate.prearchive.config import PrearchiveSettings
from dicomgate.sources.config import SourcesConfig
from dicomgate.sources.scp_processes import ReceiverProcesses

_PROJECT_ID = r"^[A-Za-z0-9_-]+$"


class ArchivePolicy(enum.StrEnum):
    """How a project takes a clean READY session: archive it at once, or wait for review."""

    AUTO = "auto"
    MANUAL = "manual"


class ProjectConfig(BaseModel):
    """A project declared in the config file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_PROJECT_ID, max_length=64)
    name: str = ""
    description: str = ""
    deid: ProjectDeid | None = None  # de-identification on archive; None: identified project
    # Prearchive review (issue 4): policy, label mapping, study cards of the project.
    archive_policy: ArchivePolicy = ArchivePolicy.AUTO
    labels: str | dict[str, Any] | None = None
    study_cards: dict[str, Any] | None = None

    @field_validator("labels")
    @classmethod
    def _label_mapping(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        from dicomgate.rules.labels import parse_label_mapping

        if value is not None:
            parse_label_mapping(value, key="labels")
        return value

    @field_validator("study_cards")
    @classmethod
    def _cards(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        from dicomgate.rules.study_cards import load_study_cards

        if value is not None:
            load_study_cards({"project": info.data.get("id", "X"), **value})
        return value


class Settings(BaseSettings):
    """Every option of dicomgate; see ``docs/config.example.yaml`` for comments."""

    model_config = SettingsConfigDict(
        env_prefix="DICOMGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Path("./dicomgate-data")
    database_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    ae_title: str = Field(default="DICOMGATE", min_length=1, max_length=16)
    dicom_max_associations: int = Field(default=32, ge=1, le=1000)
    dicom_max_pdu: int = Field(default=262144, ge=0)
    dicom_acse_timeout: float = Field(default=30.0, gt=0)
    dicom_dimse_timeout: float = Field(default=60.0, gt=0)
    dicom_network_timeout: float = Field(default=60.0, gt=0)
    dicom_allowed_calling_aes: list[str] = Field(default_factory=list)
    dicom_receiver: ReceiverProcesses = Field(default_factory=ReceiverProcesses)
    default_project: str = Field(default="DEFAULT", pattern=_PROJECT_ID, max_length=64)
    projects: list[ProjectConfig] = Field(default_factory=list)
    stable_after: float = Field(default=30.0, ge=0)
    stability_check_interval: float = Field(default=1.0, gt=0)
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    prearchive: PrearchiveSettings = Field(default_factory=PrearchiveSettings)
    pacs: PacsSettings = Field(default_factory=PacsSettings)
    query_retrieve: QueryRetrieveSettings = Field(default_factory=QueryRetrieveSettings)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    dicomweb: DicomwebSettings = Field(default_factory=DicomwebSettings)
    deid: DeidSettings = Field(default_factory=DeidSettings)

    @field_validator("ae_title", "dicom_allowed_calling_aes")
    @classmethod
    def _check_ae(cls, value: Any) -> Any:
        for ae in [value] if isinstance(value, str) else value:
            if not ae.strip() or len(ae) > 16 or "\\" in ae or not ae.isascii():
                raise ValueError(f"invalid AE title {ae!r}: 1-16 ASCII characters, no backslash")
        return value

    @model_validator(mode="after")
    def _identified_project_is_identified(self) -> Settings:
        kept = self.deid.identified_project
        if kept is None:
            return self
        known = {p.id: p for p in self.projects}
        if kept not in known and kept != self.default_project:
            raise ValueError(f"deid.identified_project: {kept!r} is not a configured project")
        if kept in known and known[kept].deid is not None:
            raise ValueError(f"deid.identified_project: {kept!r} has a de-identification profile")
        return self

    @model_validator(mode="after")
    def _one_list_of_peers(self) -> Settings:
        if self.dicom_allowed_calling_aes and self.auth.dicom_peers:
            raise ValueError(
                "dicom_allowed_calling_aes: not allowed together with auth.dicom_peers; "
                "list those AEs as auth.dicom_peers entries instead"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Let environment variables override values from the YAML file (passed as init)."""
        return (env_settings, init_settings)

    @property
    def effective_database_url(self) -> str:
        """Return the configured database URL, or SQLite inside the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options at the top level")
    return data


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from an optional YAML file, the environment and overrides.

    Parameters
    ----------
    path
        A YAML file whose keys are the option names (lower case, as in the example config).
    **overrides
        Values that win over everything else (used by tests and the CLI).

    Raises
    ------
    ConfigError
        When the file cannot be read or an option is unknown or invalid; the message names the key.
    """
    values = _read_yaml(path) if path else {}
    try:
        settings = Settings(**values)
        for key, value in overrides.items():
            if key not in Settings.model_fields:
                raise ConfigError(f"{key}: unknown option")
            setattr(settings, key, value)  # validated: overrides beat the environment
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    return settings
