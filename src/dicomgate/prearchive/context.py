"""What the prearchive review needs, built once from the settings: protocol, checks, projects."""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomgate.archive.models import Instance
from dicomgate.errors import ConfigError, StorageError
from dicomgate.intake.receive import Intake
from dicomgate.rules import (
    LabelMapping,
    RequiredHeaders,
    RulesError,
    SortingProtocol,
    StudyCards,
    load_protocol,
    load_study_cards,
)
from dicomgate.rules.labels import parse_label_mapping
from dicomgate.settings import Settings


@dataclass(frozen=True)
class Review:
    """The intake stores plus the validated rules of the prearchive review.

    Parameters
    ----------
    intake
        The index and blob stores.
    settings
        The settings it was built from (``default_project``, ``prearchive.rt_hold``...).
    protocol
        The configured sorting protocol, or None (every session goes to its source's project).
    required
        Required headers besides the four UIDs.
    cards
        Study cards by project id.
    labels
        Label mapping by project id (projects that configure one).
    """

    intake: Intake
    settings: Settings
    protocol: SortingProtocol | None = None
    required: RequiredHeaders = field(default_factory=RequiredHeaders)
    cards: dict[str, StudyCards] = field(default_factory=dict)
    labels: dict[str, LabelMapping] = field(default_factory=dict)

    @property
    def rt_hold(self) -> float:
        """Seconds a session with unresolved RT references is held."""
        return self.settings.prearchive.rt_hold


def load_protocol_file(path: Path) -> SortingProtocol:
    """Read and validate a sorting protocol file.

    Raises
    ------
    ConfigError
        Naming the file, the rule and the key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read sorting protocol {path}: {exc.strerror}") from exc
    try:
        return load_protocol(text)
    except RulesError as exc:
        raise ConfigError(f"sorting protocol {path}: {exc}") from exc


Rules = tuple[
    SortingProtocol | None, RequiredHeaders, dict[str, StudyCards], dict[str, LabelMapping]
]


def load_rules(settings: Settings) -> Rules:
    """Validate the protocol, required headers, study cards and label mappings of ``settings``.

    Raises
    ------
    ConfigError
        Naming the file, rule, card or key at fault.
    """
    config = settings.prearchive
    protocol = load_protocol_file(config.protocol) if config.protocol else None
    cards: dict[str, StudyCards] = {}
    labels: dict[str, LabelMapping] = {}
    try:
        required = RequiredHeaders.from_config(config.required_headers)
        for project in settings.projects:
            if project.study_cards is not None:
                cards[project.id] = load_study_cards({"project": project.id, **project.study_cards})
            if project.labels is not None:
                labels[project.id] = parse_label_mapping(project.labels)
    except RulesError as exc:
        raise ConfigError(str(exc)) from exc
    return protocol, required, cards, labels


def build_review(settings: Settings, intake: Intake) -> Review:
    """Return the review over ``intake`` with the validated rules of ``settings``."""
    return Review(intake, settings, *load_rules(settings))


def read_header(intake: Intake, blob_key: str) -> Dataset:
    """Read one stored instance's header (no pixel data)."""
    try:
        return pydicom.dcmread(BytesIO(intake.blobs.read(blob_key)), stop_before_pixels=True)
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read stored blob {blob_key}") from exc


def staged_headers(intake: Intake, session: Session, staging_pk: int) -> list[Dataset]:
    """Return the headers of every instance of one staging session, in arrival order."""
    keys = session.scalars(
        select(Instance.blob_key).where(Instance.staging_pk == staging_pk).order_by(Instance.pk)
    )
    return [read_header(intake, key) for key in keys]
