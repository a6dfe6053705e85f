"""Conditions of the sorting protocol: tests on header attributes and on the Origin.

``rules.condition_parser`` builds these from YAML. A condition node is a mapping; its keys are
combined with AND:

- ``all: [node, ...]``, ``any: [node, ...]``, ``not: node`` nest other nodes;
- ``origin: {field: test, ...}`` tests the Origin (``calling_ae``, ``called_ae``,
  ``import_folder``, ``user``, ``source``);
- any other key names a header attribute by keyword (``Modality``) or tag (``(0008,0060)``,
  ``00080060``) and maps to a test.

A test is a scalar (shorthand for ``equals``), a list (shorthand for ``one_of``) or a mapping of
operators, all of which must hold: ``equals``, ``one_of``, ``regex`` (full match),
``exists: true`` / ``missing: true`` (an attribute that is absent or empty is missing), ``min`` /
``max`` (numeric, inclusive), ``on_or_after`` / ``on_or_before`` (DA dates ``YYYYMMDD``,
inclusive) and, for ``import_folder`` only, ``under`` (path prefix on whole path components).

A multi-valued attribute (``ImageType``) passes ``equals``, ``one_of``, ``regex`` and the ranges
when ANY of its values does. ``equals``/``one_of`` with a YAML number compare numerically, with a
string compare exact text (case-sensitive; use ``regex: "(?i)..."`` to ignore case).
"""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from pydicom.dataset import Dataset

from dicomgate.intake.origin import Origin
from dicomgate.rules.attributes import AttributeKey, values_of

Scalar = str | int | float
VALUE_OPERATORS = frozenset(
    {"equals", "one_of", "regex", "exists", "missing", "min", "max", "on_or_after", "on_or_before"}
)
ORIGIN_FIELDS: Mapping[str, str] = {
    "calling_ae": "remote_ae",
    "called_ae": "called_ae",
    "import_folder": "import_path",
    "user": "user",
    "source": "kind",
}


class ValueTest(ABC):
    """A test on the list of values of one attribute or origin field."""

    @abstractmethod
    def test(self, values: list[object]) -> bool:
        """Return whether the values pass."""

    @abstractmethod
    def describe(self) -> str:
        """Return a PHI-free description (configuration only, never header values)."""


def _same(expected: Scalar, actual: object) -> bool:
    if isinstance(expected, str):
        return str(actual) == expected
    try:
        return float(str(actual)) == float(expected)
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class OneOf(ValueTest):
    """Any value equals one of ``expected`` (``equals`` is a one-element ``one_of``)."""

    expected: tuple[Scalar, ...]

    def test(self, values: list[object]) -> bool:  # noqa: D102
        return any(_same(e, v) for v in values for e in self.expected)

    def describe(self) -> str:  # noqa: D102
        if len(self.expected) == 1:
            return f"== {self.expected[0]!r}"
        return f"in {list(self.expected)!r}"


@dataclass(frozen=True, slots=True)
class Regex(ValueTest):
    """Any value fully matches ``pattern``."""

    pattern: re.Pattern[str]

    def test(self, values: list[object]) -> bool:  # noqa: D102
        return any(self.pattern.fullmatch(str(v)) for v in values)

    def describe(self) -> str:  # noqa: D102
        return f"matches /{self.pattern.pattern}/"


@dataclass(frozen=True, slots=True)
class Presence(ValueTest):
    """The attribute has a non-empty value (``present``) or has none."""

    present: bool

    def test(self, values: list[object]) -> bool:  # noqa: D102
        return bool(values) == self.present

    def describe(self) -> str:  # noqa: D102
        return "exists" if self.present else "is missing"


@dataclass(frozen=True, slots=True)
class NumberRange(ValueTest):
    """Any value is a number within ``[low, high]``; an open end is None."""

    low: float | None
    high: float | None

    def test(self, values: list[object]) -> bool:  # noqa: D102
        return any(_within(_number(v), self.low, self.high) for v in values)

    def describe(self) -> str:  # noqa: D102
        return f"in [{_end(self.low)}, {_end(self.high)}]"


@dataclass(frozen=True, slots=True)
class DateRange(ValueTest):
    """Any value is a DA date within ``[low, high]``; an open end is None."""

    low: dt.date | None
    high: dt.date | None

    def test(self, values: list[object]) -> bool:  # noqa: D102
        return any(_within(_date(v), self.low, self.high) for v in values)

    def describe(self) -> str:  # noqa: D102
        return f"dated [{_end(self.low)}, {_end(self.high)}]"


@dataclass(frozen=True, slots=True)
class Under(ValueTest):
    """The path lies in folder ``prefix`` (compared on whole path components)."""

    prefix: PurePosixPath

    def test(self, values: list[object]) -> bool:  # noqa: D102
        return any(PurePosixPath(str(v)).is_relative_to(self.prefix) for v in values)

    def describe(self) -> str:  # noqa: D102
        return f"under {str(self.prefix)!r}"


def _end(bound: object) -> str:
    return "..." if bound is None else str(bound)


def _within(value: float | dt.date | None, low: object, high: object) -> bool:
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)  # type: ignore[operator]


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def _date(value: object) -> dt.date | None:
    # Legacy ACR-NEMA dates use dots; DT values start with the date, so the first 8 digits do.
    digits = str(value).replace(".", "")[:8]
    try:
        return dt.datetime.strptime(digits, "%Y%m%d").date() if len(digits) == 8 else None
    except ValueError:
        return None


class Condition(ABC):
    """A node of the condition tree."""

    @abstractmethod
    def matches(self, header: Dataset, origin: Origin) -> bool:
        """Return whether the header and its origin satisfy the condition."""

    @abstractmethod
    def describe(self) -> str:
        """Return a PHI-free description for dry runs."""


@dataclass(frozen=True, slots=True)
class Always(Condition):
    """Matches everything (a rule without ``when``)."""

    def matches(self, header: Dataset, origin: Origin) -> bool:  # noqa: D102
        return True

    def describe(self) -> str:  # noqa: D102
        return "always"


@dataclass(frozen=True, slots=True)
class AttributeCondition(Condition):
    """All ``tests`` pass on the values of one header attribute."""

    key: AttributeKey
    tests: tuple[ValueTest, ...]

    def matches(self, header: Dataset, origin: Origin) -> bool:  # noqa: D102
        values = values_of(header, self.key)
        return all(t.test(values) for t in self.tests)

    def describe(self) -> str:  # noqa: D102
        return " and ".join(f"{self.key.spelling} {t.describe()}" for t in self.tests)


@dataclass(frozen=True, slots=True)
class OriginCondition(Condition):
    """All ``tests`` pass on one field of the Origin."""

    field: str
    tests: tuple[ValueTest, ...]

    def matches(self, header: Dataset, origin: Origin) -> bool:  # noqa: D102
        raw = getattr(origin, ORIGIN_FIELDS[self.field])
        # AE titles arrive space-padded from some peers; padding never distinguishes sources.
        values: list[object] = [str(raw).strip()] if raw is not None and str(raw).strip() else []
        return all(t.test(values) for t in self.tests)

    def describe(self) -> str:  # noqa: D102
        return " and ".join(f"origin.{self.field} {t.describe()}" for t in self.tests)


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    """Every child matches."""

    children: tuple[Condition, ...]

    def matches(self, header: Dataset, origin: Origin) -> bool:  # noqa: D102
        return all(c.matches(header, origin) for c in self.children)

    def describe(self) -> str:  # noqa: D102
        if len(self.children) == 1:
            return self.children[0].describe()
        return "all(" + "; ".join(c.describe() for c in self.children) + ")"


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    """At least one child matches."""

    children: tuple[Condition, ...]

    def matches(self, header: Dataset, origin: Origin) -> bool:  # noqa: D102
        return any(c.matches(header, origin) for c in self.children)

    def describe(self) -> str:  # noqa: D102
        return "any(" + "; ".join(c.describe() for c in self.children) + ")"


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """The child does not match."""

    child: Condition

    def matches(self, header: Dataset, origin: Origin) -> bool:  # noqa: D102
        return not self.child.matches(header, origin)

    def describe(self) -> str:  # noqa: D102
        return f"not({self.child.describe()})"
