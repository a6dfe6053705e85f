"""Per-project study cards: which acquisition equipment a project accepts, and scan metadata.

A project's card set (YAML or mapping)::

    project: BRAIN_MR
    required: true                  # a session matching no card -> EQUIPMENT_NOT_COMPATIBLE
    cards:
      - name: prisma-3t
        match:                      # every listed field must pass
          Manufacturer: SIEMENS     # a string is shorthand for {equals: ...}
          ManufacturerModelName: {regex: "Prisma(_fit)?"}
          MagneticFieldStrength: {value: 3.0, tolerance: 0.05}   # a number is {value: n}
        assign:                     # in order; the first assignment that sets a key wins
          - {attribute: SeriesDescription, regex: "(?i).*mprage.*", set: {scan_type: T1w}}

Equipment fields: Manufacturer, ManufacturerModelName, DeviceSerialNumber, StationName,
MagneticFieldStrength. A field test is ``equals`` (exact text), ``regex`` (full match) or ``value``
with an optional ``tolerance`` (numeric, inclusive). A field absent from the header never passes.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydicom.dataset import Dataset

from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.rules.attributes import first_text, parse_attribute_key
from dicomgate.rules.errors import StudyCardError

_PROJECT_ID = r"^[A-Za-z0-9_-]+$"


class EquipmentField(enum.StrEnum):
    """Header attributes that identify acquisition equipment."""

    MANUFACTURER = "Manufacturer"
    MODEL = "ManufacturerModelName"
    SERIAL = "DeviceSerialNumber"
    STATION = "StationName"
    FIELD_STRENGTH = "MagneticFieldStrength"


@dataclass(frozen=True, slots=True)
class Equipment:
    """The equipment an instance was acquired on (values as found; None when absent)."""

    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    station: str | None = None
    field_strength: float | None = None

    def value(self, which: EquipmentField) -> str | float | None:
        """Return the value of one equipment field."""
        return {
            EquipmentField.MANUFACTURER: self.manufacturer,
            EquipmentField.MODEL: self.model,
            EquipmentField.SERIAL: self.serial,
            EquipmentField.STATION: self.station,
            EquipmentField.FIELD_STRENGTH: self.field_strength,
        }[which]

    def to_json(self) -> dict[str, object]:
        """Return a JSON-serialisable form keyed by DICOM keyword."""
        return {f.value: self.value(f) for f in EquipmentField}


def equipment_of(header: Dataset) -> Equipment:
    """Extract the equipment tuple of one header, for matching and for recording per project.

    Parameters
    ----------
    header
        The instance header.

    Returns
    -------
    Equipment
        The equipment fields; a non-numeric field strength becomes None.
    """
    strength = first_text(header, EquipmentField.FIELD_STRENGTH)
    try:
        tesla = float(strength) if strength is not None else None
    except ValueError:
        tesla = None
    return Equipment(
        first_text(header, EquipmentField.MANUFACTURER),
        first_text(header, EquipmentField.MODEL),
        first_text(header, EquipmentField.SERIAL),
        first_text(header, EquipmentField.STATION),
        tesla if tesla is not None and math.isfinite(tesla) else None,
    )


def _compile(value: object) -> object:
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regular expression: {exc}") from exc
    return value


class FieldTest(BaseModel):
    """One test on an equipment field: exactly one of ``equals``, ``regex`` or ``value``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    equals: str | None = None
    regex: re.Pattern[str] | None = None
    value: float | None = None
    tolerance: float = Field(default=0.0, ge=0.0)

    _compile_regex = field_validator("regex", mode="before")(_compile)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        if isinstance(data, str):
            return {"equals": data}
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"value": data}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> FieldTest:
        given = [self.equals is not None, self.regex is not None, self.value is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of equals, regex, value")
        if self.tolerance and self.value is None:
            raise ValueError("tolerance only goes with value")
        return self

    def test(self, actual: str | float | None) -> bool:
        """Return whether an equipment value passes."""
        if actual is None:
            return False
        if self.equals is not None:
            return str(actual) == self.equals
        if self.regex is not None:
            return self.regex.fullmatch(str(actual)) is not None
        try:
            # The epsilon keeps 1.5 +/- 0.1 inclusive despite binary floating point.
            return abs(float(actual) - float(self.value or 0.0)) <= self.tolerance + 1e-9
        except ValueError:
            return False


class Assignment(BaseModel):
    """Set scan metadata when a series attribute fully matches ``regex``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: str = "SeriesDescription"
    regex: re.Pattern[str]
    set: dict[str, str] = Field(min_length=1)

    _compile_regex = field_validator("regex", mode="before")(_compile)

    @field_validator("attribute")
    @classmethod
    def _known_attribute(cls, value: str) -> str:
        parse_attribute_key(value)  # raises ValueError for an unknown keyword
        return value

    def applies_to(self, header: Dataset) -> bool:
        """Return whether the series header matches."""
        text = first_text(header, self.attribute)
        return text is not None and self.regex.fullmatch(text) is not None


class StudyCard(BaseModel):
    """Equipment a project accepts, and metadata to assign to its series."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    match: dict[EquipmentField, FieldTest] = Field(min_length=1)
    assign: list[Assignment] = Field(default_factory=list)

    def accepts(self, equipment: Equipment) -> bool:
        """Return whether every field test passes."""
        return all(test.test(equipment.value(f)) for f, test in self.match.items())


class StudyCards(BaseModel):
    """The study cards of one project."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str = Field(pattern=_PROJECT_ID)
    required: bool = False
    cards: list[StudyCard] = Field(default_factory=list)

    @model_validator(mode="after")
    def _usable(self) -> StudyCards:
        names = [card.name for card in self.cards]
        if len(set(names)) != len(names):
            raise ValueError("card names must be unique")
        if self.required and not self.cards:
            raise ValueError("required study cards need at least one card")
        return self


def load_study_cards(source: str | Mapping[str, object]) -> StudyCards:
    """Validate a project's study cards from YAML text or a mapping.

    Parameters
    ----------
    source
        YAML text or the mapping it would load to.

    Returns
    -------
    StudyCards
        The validated card set.

    Raises
    ------
    StudyCardError
        Naming the card (``card 'name' (cards[i])``) and the offending key.
    """
    try:
        data = yaml.safe_load(source) if isinstance(source, str) else source
    except yaml.YAMLError as exc:
        raise StudyCardError(f"not valid YAML: {exc}") from exc
    try:
        return StudyCards.model_validate(data)
    except ValidationError as exc:
        raise _card_error(exc, data) from exc


def _card_error(exc: ValidationError, data: object) -> StudyCardError:
    error = exc.errors()[0]
    loc = list(error["loc"])
    rule = None
    if len(loc) >= 2 and loc[0] == "cards" and isinstance(loc[1], int):
        rule = f"cards[{loc[1]}]"
        cards = data.get("cards") if isinstance(data, Mapping) else None
        card = cards[loc[1]] if isinstance(cards, list) and loc[1] < len(cards) else None
        if isinstance(card, Mapping) and isinstance(card.get("name"), str):
            rule = f"card '{card['name']}' ({rule})"
        loc = loc[2:]
    # pydantic marks a bad dict key with a trailing "[key]"; the key itself is already in loc
    key = ".".join(str(part) for part in loc if part != "[key]") or None
    return StudyCardError(error["msg"], rule=rule, key=key)


def match_card(cards: StudyCards, equipment: Equipment) -> StudyCard | None:
    """Return the first card accepting ``equipment``, or None."""
    return next((card for card in cards.cards if card.accepts(equipment)), None)


def check_equipment(cards: StudyCards, headers: Sequence[Dataset]) -> list[Reason]:
    """Check that every piece of equipment in a session matches a card, when cards are required.

    Parameters
    ----------
    cards
        The target project's study cards.
    headers
        The headers of the session.

    Returns
    -------
    list of Reason
        One EQUIPMENT_NOT_COMPATIBLE reason listing unmatched equipment; empty otherwise.
    """
    if not cards.required:
        return []
    seen = list(dict.fromkeys(equipment_of(header) for header in headers))
    unmatched = [eq for eq in seen if match_card(cards, eq) is None]
    if not unmatched:
        return []
    details: dict[str, object] = {
        "project": cards.project,
        "equipment": [eq.to_json() for eq in unmatched],
    }
    message = f"acquisition equipment matches no study card of project {cards.project}"
    return [Reason(ReasonCode.EQUIPMENT_NOT_COMPATIBLE, message, details)]


@dataclass(frozen=True, slots=True)
class SeriesAssignment:
    """What the study cards assigned to one series."""

    card: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


def apply_cards(
    cards: StudyCards, series_headers: Iterable[Dataset]
) -> dict[str, SeriesAssignment]:
    """Assign scan metadata per series; works on staged and on archived sessions alike.

    Parameters
    ----------
    cards
        The project's study cards.
    series_headers
        One or more headers per series; the first header of each series is used.

    Returns
    -------
    dict of str to SeriesAssignment
        Keyed by Series Instance UID; a series matching no card gets ``card=None`` and no metadata.
    """
    result: dict[str, SeriesAssignment] = {}
    for header in series_headers:
        series = str(header.get("SeriesInstanceUID", "") or "")
        if series in result:
            continue
        card = match_card(cards, equipment_of(header))
        metadata: dict[str, str] = {}
        for assignment in card.assign if card else ():
            if assignment.applies_to(header):
                for key, value in assignment.set.items():
                    metadata.setdefault(key, value)
        result[series] = SeriesAssignment(card.name if card else None, metadata)
    return result
