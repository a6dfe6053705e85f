"""Required headers: the four identifying UIDs and a configurable list of attributes.

Every instance must carry a syntactically valid SOP Class, SOP Instance, Study Instance and Series
Instance UID (digits and dots, at most 64 characters, no empty component, no leading zero in a
component). The configured attributes must be present and non-empty. Problems become
MISSING_REQUIRED_HEADER reasons, one per attribute and kind of problem, listing the instances.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.rules.attributes import AttributeKey, parse_attribute_key, values_of
from dicomgate.rules.errors import RulesError

UID_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
MAX_UID_LENGTH = 64
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_valid_uid(value: object) -> bool:
    """Return whether ``value`` is a UID by PS3.5 9.1 syntax.

    Parameters
    ----------
    value
        Anything; only a string can be a UID.

    Returns
    -------
    bool
        True for digits-and-dots components, no leading zeros, at most 64 characters.
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_UID_LENGTH
        and _UID.fullmatch(value) is not None
    )


@dataclass(frozen=True, slots=True)
class RequiredHeaders:
    """The configured attributes every instance must carry, besides the four UIDs.

    Parameters
    ----------
    attributes
        Resolved attribute keys.
    """

    attributes: tuple[AttributeKey, ...] = ()

    @classmethod
    def from_config(cls, names: Sequence[str]) -> RequiredHeaders:
        """Validate a list of keywords or tags.

        Parameters
        ----------
        names
            Keywords (``PatientID``) or tags (``(0010,0020)``).

        Returns
        -------
        RequiredHeaders
            The validated configuration.

        Raises
        ------
        RulesError
            Naming ``required_headers`` and the position of the bad entry.
        """
        keys = []
        for i, name in enumerate(names):
            try:
                keys.append(parse_attribute_key(name))
            except ValueError as exc:
                raise RulesError(str(exc), rule="required_headers", key=f"[{i}]") from exc
        return cls(tuple(keys))


def header_problems(header: Dataset, required: RequiredHeaders) -> list[tuple[str, str]]:
    """List what is wrong with one header.

    Parameters
    ----------
    header
        The instance header.
    required
        The configured extra attributes.

    Returns
    -------
    list of (str, str)
        ``(attribute, problem)`` pairs; problem is ``missing`` or ``invalid_uid``.
    """
    problems: list[tuple[str, str]] = []
    for keyword in UID_ATTRIBUTES:
        values = values_of(header, parse_attribute_key(keyword))
        if not values:
            problems.append((keyword, "missing"))
        elif len(values) != 1 or not is_valid_uid(values[0]):
            problems.append((keyword, "invalid_uid"))
    for key in required.attributes:
        if not values_of(header, key):
            problems.append((key.keyword, "missing"))
    return problems


def check_required(
    headers: Sequence[Dataset], required: RequiredHeaders | None = None
) -> list[Reason]:
    """Check every header of a session and summarise the problems.

    Parameters
    ----------
    headers
        The headers of the session (or one instance).
    required
        The configured extra attributes; only the UIDs when omitted.

    Returns
    -------
    list of Reason
        One MISSING_REQUIRED_HEADER reason per attribute and problem; empty when all is well.
    """
    required = required or RequiredHeaders()
    found: dict[tuple[str, str], list[str]] = {}
    for i, header in enumerate(headers):
        for problem in header_problems(header, required):
            found.setdefault(problem, []).append(_instance_id(header, i))
    return [_reason(attribute, problem, ids) for (attribute, problem), ids in found.items()]


def _instance_id(header: Dataset, index: int) -> str:
    uid = str(header.get("SOPInstanceUID", "") or "")
    return uid if is_valid_uid(uid) else f"#{index}"


def _reason(attribute: str, problem: str, instances: list[str]) -> Reason:
    what = "is missing or empty" if problem == "missing" else "is not a valid UID"
    return Reason(
        ReasonCode.MISSING_REQUIRED_HEADER,
        f"{attribute} {what} in {len(instances)} instance(s)",
        {"attribute": attribute, "problem": problem, "instances": instances},
    )
