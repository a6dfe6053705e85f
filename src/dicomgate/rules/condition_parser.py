"""Build condition trees from protocol YAML, validating every key eagerly.

The grammar is documented in ``rules.conditions``. Every error is a ``ProtocolError`` naming the
rule and the dotted key path (``when.all[1].StudyDate.on_or_after``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from dicomgate.intake.origin import OriginKind
from dicomgate.rules.attributes import parse_attribute_key
from dicomgate.rules.conditions import (
    ORIGIN_FIELDS,
    VALUE_OPERATORS,
    AllOf,
    AnyOf,
    AttributeCondition,
    Condition,
    DateRange,
    Not,
    NumberRange,
    OneOf,
    OriginCondition,
    Presence,
    Regex,
    Scalar,
    Under,
    ValueTest,
)
from dicomgate.rules.errors import ProtocolError

_DATE_TEXT = re.compile(r"^\d{8}$")


def parse_condition(node: object, rule: str, path: str = "when") -> Condition:
    """Validate one condition node and build its condition.

    Parameters
    ----------
    node
        The node as loaded from YAML.
    rule
        The rule's display name, for error messages.
    path
        The dotted key path of the node, for error messages.

    Returns
    -------
    Condition
        The condition tree; several keys in one node are combined with AND.

    Raises
    ------
    ProtocolError
        On any unknown key, operator, keyword, bad regex, bad date or bad value.
    """
    if not isinstance(node, Mapping) or not node:
        raise ProtocolError("a condition must be a non-empty mapping", rule=rule, key=path)
    children = [_parse_entry(str(key), value, rule, f"{path}.{key}") for key, value in node.items()]
    return children[0] if len(children) == 1 else AllOf(tuple(children))


def _parse_entry(key: str, value: object, rule: str, path: str) -> Condition:
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise ProtocolError(f"'{key}' needs a non-empty list", rule=rule, key=path)
        children = tuple(
            parse_condition(item, rule, f"{path}[{i}]") for i, item in enumerate(value)
        )
        return AllOf(children) if key == "all" else AnyOf(children)
    if key == "not":
        return Not(parse_condition(value, rule, path))
    if key == "origin":
        return _parse_origin(value, rule, path)
    try:
        attribute = parse_attribute_key(key)
    except ValueError as exc:
        raise ProtocolError(str(exc), rule=rule, key=path) from exc
    return AttributeCondition(attribute, parse_tests(value, rule, path))


def _parse_origin(value: object, rule: str, path: str) -> Condition:
    if not isinstance(value, Mapping) or not value:
        raise ProtocolError("'origin' needs a mapping of fields", rule=rule, key=path)
    children: list[Condition] = []
    for field, spec in value.items():
        where = f"{path}.{field}"
        if field not in ORIGIN_FIELDS:
            known = ", ".join(ORIGIN_FIELDS)
            raise ProtocolError(f"unknown origin field (known: {known})", rule=rule, key=where)
        tests = parse_tests(spec, rule, where, allow_under=field == "import_folder")
        if field == "source":
            _check_source_kinds(tests, rule, where)
        children.append(OriginCondition(field, tests))
    return children[0] if len(children) == 1 else AllOf(tuple(children))


def _check_source_kinds(tests: tuple[ValueTest, ...], rule: str, path: str) -> None:
    kinds = {kind.value for kind in OriginKind}
    for test in tests:
        if isinstance(test, OneOf):
            for value in test.expected:
                if value not in kinds:
                    known = ", ".join(sorted(kinds))
                    message = f"unknown source kind {value!r} (known: {known})"
                    raise ProtocolError(message, rule=rule, key=path)


def parse_tests(
    spec: object, rule: str, path: str, *, allow_under: bool = False
) -> tuple[ValueTest, ...]:
    """Validate a test spec (scalar, list or operator mapping) and build its value tests.

    Parameters
    ----------
    spec
        The test as loaded from YAML.
    rule
        The rule's display name, for error messages.
    path
        The dotted key path of the test, for error messages.
    allow_under
        Whether the path-prefix operator ``under`` is allowed (``import_folder`` only).

    Returns
    -------
    tuple of ValueTest
        Tests that must all pass.
    """
    if isinstance(spec, list):
        spec = {"one_of": spec}
    elif not isinstance(spec, Mapping):
        spec = {"equals": spec}
    if not spec:
        raise ProtocolError("a test needs at least one operator", rule=rule, key=path)
    allowed = VALUE_OPERATORS | ({"under"} if allow_under else set())
    for op in spec:
        if op not in allowed:
            known = ", ".join(sorted(allowed))
            message = f"unknown operator {op!r} (known: {known})"
            raise ProtocolError(message, rule=rule, key=f"{path}.{op}")
    tests = [_parse_simple(op, arg, rule, f"{path}.{op}") for op, arg in spec.items()]
    tests += _parse_ranges(spec, rule, path)
    return tuple(t for t in tests if t is not None)


def _parse_simple(op: str, arg: object, rule: str, path: str) -> ValueTest | None:
    if op == "equals":
        return OneOf((_scalar(arg, rule, path),))
    if op == "one_of":
        if not isinstance(arg, list) or not arg:
            raise ProtocolError("'one_of' needs a non-empty list", rule=rule, key=path)
        return OneOf(tuple(_scalar(item, rule, f"{path}[{i}]") for i, item in enumerate(arg)))
    if op == "regex":
        return Regex(_compile(arg, rule, path))
    if op in ("exists", "missing"):
        if not isinstance(arg, bool):
            raise ProtocolError(f"'{op}' takes true or false", rule=rule, key=path)
        return Presence(arg if op == "exists" else not arg)
    if op == "under":
        if not isinstance(arg, str) or not arg.startswith("/"):
            raise ProtocolError("'under' needs an absolute folder path", rule=rule, key=path)
        return Under(PurePosixPath(arg))
    return None  # a range bound, built by _parse_ranges


def _parse_ranges(spec: Mapping[str, object], rule: str, path: str) -> list[ValueTest]:
    tests: list[ValueTest] = []
    if "min" in spec or "max" in spec:
        low = _bound_number(spec.get("min"), rule, f"{path}.min")
        high = _bound_number(spec.get("max"), rule, f"{path}.max")
        if low is not None and high is not None and low > high:
            raise ProtocolError("'min' is greater than 'max'", rule=rule, key=f"{path}.min")
        tests.append(NumberRange(low, high))
    if "on_or_after" in spec or "on_or_before" in spec:
        start = _bound_date(spec.get("on_or_after"), rule, f"{path}.on_or_after")
        end = _bound_date(spec.get("on_or_before"), rule, f"{path}.on_or_before")
        if start is not None and end is not None and start > end:
            message = "'on_or_after' is later than 'on_or_before'"
            raise ProtocolError(message, rule=rule, key=f"{path}.on_or_after")
        tests.append(DateRange(start, end))
    return tests


def _scalar(value: object, rule: str, path: str) -> Scalar:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ProtocolError(f"expected a string or number, got {value!r}", rule=rule, key=path)
    return value


def _compile(pattern: object, rule: str, path: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ProtocolError("'regex' needs a string", rule=rule, key=path)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ProtocolError(f"bad regular expression: {exc}", rule=rule, key=path) from exc


def _bound_number(value: object, rule: str, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"expected a number, got {value!r}", rule=rule, key=path)
    return float(value)


def _bound_date(value: object, rule: str, path: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):  # YAML reads 2020-01-31 as a date already
        return value
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    try:
        if _DATE_TEXT.match(text):
            return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        pass
    raise ProtocolError(f"bad date {value!r} (expected YYYYMMDD)", rule=rule, key=path)
