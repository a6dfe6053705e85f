"""A de-identification profile is data: a frozen, validated model loaded from a mapping.

Example (YAML)::

    name: study-x
    options: [retain_safe_private, clean_descriptors]
    dates: shift                 # remove | keep | shift (per-subject offset from the keys)
    birth_date: first_day_of_year  # remove | keep | first_day_of_year | shift
    safe_private: ["0019,SIEMENS MR HEADER,0C"]   # omit to use the shipped default list
    burned_in: {allow: false, modalities: [US, SC, OT, XC, ES, DOC]}
    pixel_masks:
      - {manufacturer: ACME, model: Echo 1, rows: 480, columns: 640,
         rectangles: [{x: 0, y: 0, width: 640, height: 40}]}
    overrides: {"(0008,103E)": K, StudyDescription: X}
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from functools import cached_property
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydicom.datadict import tag_for_keyword

from dicomgate.deid.errors import ProfileError
from dicomgate.deid.table import Option

ACTION_CODES = frozenset({"X", "Z", "D", "K", "C", "U"})
DEFAULT_BURNED_IN_MODALITIES = ("US", "SC", "OT", "XC", "ES", "DOC")
SAFE_PRIVATE_FILE = "safe_private_attributes.json"
_TAG_RE = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


class DateMode(enum.StrEnum):
    """What happens to dates: removed (Basic Profile), kept, or shifted per subject."""

    REMOVE = "remove"
    KEEP = "keep"
    SHIFT = "shift"


class BirthDateRule(enum.StrEnum):
    """What happens to Patient's Birth Date."""

    REMOVE = "remove"
    KEEP = "keep"
    FIRST_DAY_OF_YEAR = "first_day_of_year"
    SHIFT = "shift"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rect(_Frozen):
    """A rectangle of pixels to blank, in columns (x) and rows (y)."""

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class PixelMask(_Frozen):
    """Rectangles to blank on images of one device and matrix size."""

    manufacturer: str
    model: str
    rows: int = Field(gt=0)
    columns: int = Field(gt=0)
    rectangles: tuple[Rect, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _inside_image(self) -> PixelMask:
        for rect in self.rectangles:
            if rect.x + rect.width > self.columns or rect.y + rect.height > self.rows:
                raise ValueError(f"rectangle {rect.model_dump()} exceeds the image size")
        return self


class BurnedInPolicy(_Frozen):
    """Whether images that may carry burned-in text are allowed without a mask."""

    allow: bool = False
    modalities: tuple[str, ...] = DEFAULT_BURNED_IN_MODALITIES


class PrivateTagRef(_Frozen):
    """A private attribute identified by group, private creator and element byte."""

    group: int
    creator: str
    element: int

    @classmethod
    def parse(cls, text: str) -> PrivateTagRef:
        """Parse ``"gggg,CREATOR,ee"`` (hex group and element byte)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ValueError(f"{text!r}: expected 'gggg,CREATOR,ee'")
        group, element = int(parts[0], 16), int(parts[2], 16)
        if group % 2 == 0 or not 0 <= element <= 0xFF or not parts[1]:
            raise ValueError(f"{text!r}: need an odd group, a creator and an element byte")
        return cls(group=group, creator=parts[1], element=element)


class Profile(_Frozen):
    """A validated de-identification profile; hashable so compiled plans can be cached."""

    name: str = "basic"
    options: frozenset[Option] = frozenset()
    dates: DateMode = DateMode.REMOVE
    birth_date: BirthDateRule = BirthDateRule.REMOVE
    safe_private: tuple[PrivateTagRef, ...] | None = None
    pixel_masks: tuple[PixelMask, ...] = ()
    burned_in: BurnedInPolicy = BurnedInPolicy()
    overrides: tuple[tuple[int, str], ...] = ()
    pseudonym_pattern: str = r"^[A-Za-z0-9_.\- ]*$"

    @field_validator("safe_private", mode="before")
    @classmethod
    def _parse_private(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(PrivateTagRef.parse(v) if isinstance(v, str) else v for v in value)
        return value

    @field_validator("overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return tuple(sorted((_parse_tag(k), _parse_action(v)) for k, v in value.items()))
        return value

    @field_validator("pseudonym_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value)
        return value

    @model_validator(mode="after")
    def _dates_agree(self) -> Profile:
        full = Option.RETAIN_LONGITUDINAL_FULL_DATES in self.options
        modified = Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in self.options
        if (full and self.dates != DateMode.KEEP) or (modified and self.dates != DateMode.SHIFT):
            raise ValueError("options: longitudinal options must agree with 'dates' (keep/shift)")
        return self

    @cached_property
    def effective_options(self) -> frozenset[Option]:
        """Return the options including the one implied by ``dates``."""
        implied = {
            DateMode.KEEP: {Option.RETAIN_LONGITUDINAL_FULL_DATES},
            DateMode.SHIFT: {Option.RETAIN_LONGITUDINAL_MODIFIED_DATES},
        }.get(self.dates, set())
        return self.options | implied

    @cached_property
    def safe_private_set(self) -> frozenset[tuple[int, str, int]]:
        """Return the safe private list as (group, creator, element byte) triples."""
        refs = self.safe_private if self.safe_private is not None else default_safe_private()
        return frozenset((r.group, r.creator.strip(), r.element) for r in refs)


def _parse_tag(key: object) -> int:
    text = str(key).strip()
    match = _TAG_RE.match(text)
    if match:
        return int(match.group(1) + match.group(2), 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise ValueError(f"overrides: {text!r} is neither a tag nor a DICOM keyword")
    return tag


def _parse_action(value: object) -> str:
    code = str(value).strip().upper()
    if code not in ACTION_CODES:
        raise ValueError(f"overrides: action {value!r} not one of {sorted(ACTION_CODES)}")
    return code


def default_safe_private() -> tuple[PrivateTagRef, ...]:
    """Return the shipped safe private list (examples from PS3.15 Table E.3.10-1)."""
    path = resources.files("dicomgate").joinpath("data/ps3.15", SAFE_PRIVATE_FILE)
    rows = json.loads(path.read_text("utf-8"))["attributes"]
    return tuple(PrivateTagRef.parse(f"{r['group']},{r['creator']},{r['element']}") for r in rows)


def load_profile(mapping: Mapping[str, Any]) -> Profile:
    """Validate a profile mapping (e.g. parsed YAML) and return a :class:`Profile`.

    Parameters
    ----------
    mapping
        The profile as plain data.

    Returns
    -------
    Profile
        The frozen, validated profile.

    Raises
    ------
    ProfileError
        When a key is unknown or a value invalid; the message names every offending key.
    """
    try:
        return Profile.model_validate(dict(mapping))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'profile'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ProfileError(f"invalid de-identification profile: {problems}") from None
