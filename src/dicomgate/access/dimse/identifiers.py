"""Read a C-FIND/C-MOVE/C-GET request identifier into a typed :class:`Query`.

The identifier is the peer's: every check that can fail raises :class:`InvalidInputError`
with a message that names the offending attribute (never its value, which may be PHI).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from dicomgate.errors import InvalidInputError


class Level(enum.StrEnum):
    """Query/Retrieve Level (0008,0052)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        """Return 0 for PATIENT ... 3 for IMAGE."""
        return list(Level).index(self)


class Root(enum.StrEnum):
    """The information model a request was sent under."""

    PATIENT = "patient"
    STUDY = "study"


@dataclass(frozen=True, slots=True)
class Key:
    """One attribute of the identifier: what the peer matches on or asks to be returned.

    Parameters
    ----------
    tag, vr, keyword
        The element as the peer sent it (keyword is '' for private or unknown tags).
    value
        The matching value as text, multiple values joined by backslashes; '' asks for the
        attribute to be returned (universal matching).
    """

    tag: int
    vr: str
    keyword: str
    value: str


@dataclass(frozen=True, slots=True)
class Query:
    """A validated request: the model, the level and the keys in the order the peer sent them."""

    root: Root
    level: Level
    keys: list[Key] = field(default_factory=list)

    def returning(self, keyword: str) -> Query:
        """Return this query with ``keyword`` as a return key (unchanged when already a key)."""
        if any(k.keyword == keyword for k in self.keys):
            return self
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        return Query(self.root, self.level, [*self.keys, Key(tag, dictionary_VR(tag), keyword, "")])

    def value(self, keyword: str) -> str:
        """Return the matching value of ``keyword`` ('' when absent or universal)."""
        return next((k.value for k in self.keys if k.keyword == keyword), "")


_SKIPPED = {0x00080052, 0x00080005}  # level and character set are not keys
_MAX_VALUE = 4096


def _text(elem: DataElement) -> str:
    value = elem.value
    if value is None:
        return ""
    if elem.VR == "SQ":
        return ""  # sequence matching is not supported: the sequence is a return key
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return ""
    return str(value)


def _key(elem: DataElement) -> Key:
    text = _text(elem).strip()
    if len(text) > _MAX_VALUE:
        raise InvalidInputError(f"the value of {elem.keyword or elem.tag} is too long")
    return Key(int(elem.tag), str(elem.VR), str(elem.keyword or ""), text)


def _level(identifier: Dataset, root: Root) -> Level:
    raw = identifier.get("QueryRetrieveLevel")
    if raw is None or str(raw).strip() == "":
        raise InvalidInputError("QueryRetrieveLevel (0008,0052) is missing or empty")
    try:
        level = Level(str(raw).strip().upper())
    except ValueError:
        raise InvalidInputError(
            "QueryRetrieveLevel must be PATIENT, STUDY, SERIES or IMAGE"
        ) from None
    if root is Root.STUDY and level is Level.PATIENT:
        raise InvalidInputError("the Study Root model has no PATIENT level")
    return level


def parse_query(identifier: Dataset, root: Root) -> Query:
    """Return the typed query of a request identifier.

    Parameters
    ----------
    identifier
        The decoded identifier of the request.
    root
        The information model of the presentation context the request came on.

    Raises
    ------
    InvalidInputError
        When the level is missing or invalid, or a value cannot be read.
    """
    level = _level(identifier, root)
    keys: list[Key] = []
    try:
        for elem in identifier:
            if int(elem.tag) in _SKIPPED or elem.tag.element == 0:
                continue
            keys.append(_key(elem))
    except InvalidInputError:
        raise
    except Exception as exc:  # a value pydicom cannot decode: the peer's fault
        unreadable = f"an identifier value cannot be read ({type(exc).__name__})"
        raise InvalidInputError(unreadable) from exc
    return Query(root, level, keys)
