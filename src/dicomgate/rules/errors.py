"""Errors raised while loading or applying rules configuration.

All of them are ``ValueError``s, so a caller that only knows the standard library can still catch
them; each names the rule and the key that is wrong, so a bad configuration fails at start-up with
a message the operator can act on::

    ValueError
    └── RulesError            any rules problem; ``rule`` and ``key`` say where
        ├── ProtocolError     a malformed sorting protocol
        ├── LabelMappingError a malformed label mapping
        └── StudyCardError    a malformed study card set
"""

from __future__ import annotations


class RulesError(ValueError):
    """A rules configuration or input that cannot be used.

    Parameters
    ----------
    problem
        What is wrong, without the location.
    rule
        The rule (its name or position) the problem is in, if any.
    key
        The dotted key inside the rule, if any.
    """

    def __init__(self, problem: str, *, rule: str | None = None, key: str | None = None) -> None:
        self.problem = problem
        self.rule = rule
        self.key = key
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.rule is not None:
            where.append(self.rule)
        if self.key is not None:
            where.append(f"key '{self.key}'")
        return f"{', '.join(where)}: {self.problem}" if where else self.problem


class ProtocolError(RulesError):
    """A sorting protocol that does not validate."""


class LabelMappingError(RulesError):
    """A label mapping that does not validate."""


class StudyCardError(RulesError):
    """A study card set that does not validate."""
