"""The sorting protocol: an ordered list of rules that routes each instance and each session.

Format (YAML or an equivalent mapping)::

    version: 1
    labels: dasher                  # default label mapping: a preset name or a LabelMapping
    rules:
      - name: no-secondary-capture  # optional, unique; messages use it, else rules[i]
        when: {SOPClassUID: 1.2.840.10008.5.1.4.1.1.7}
        reject: secondary captures are not accepted
      - name: lung-ct
        when:
          all:
            - Modality: [CT, PT]
            - origin: {calling_ae: CT_SCANNER_1}
        archive: {project: LUNG_CT, labels: patient_id_accession}
      - name: everything-else       # no ``when``: matches everything
        quarantine: not covered by the protocol

Each rule has exactly one action: ``archive: PROJECT`` (or ``{project:, labels:}``),
``quarantine: reason`` or ``reject: reason``. The condition grammar is in ``rules.conditions``.

Evaluation: per instance, the first rule whose condition matches decides; when none matches the
instance is quarantined with NO_RULE_MATCHED. Per session, every instance is routed; when all
outcomes agree (same action, project and labels) that is the session's decision, with the reasons
of all instances merged. When they differ, the session is quarantined with RULE_QUARANTINE and
``details["outcomes"]`` lists each distinct outcome with its rule, count and SOP Instance UIDs, so
a data manager can split or release it; a session is never partly archived by the protocol.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml
from pydicom.dataset import Dataset

from dicomgate.intake.origin import Origin
from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.rules.condition_parser import parse_condition
from dicomgate.rules.conditions import Always, Condition
from dicomgate.rules.decision import QUARANTINE_PROJECT, Action, Decision, RuleRef
from dicomgate.rules.errors import ProtocolError, RulesError
from dicomgate.rules.labels import PRESETS, LabelMapping, labels_for, parse_label_mapping

PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_TOP_KEYS = frozenset({"version", "labels", "rules"})
_RULE_KEYS = frozenset({"name", "description", "when", "archive", "quarantine", "reject"})
_ACTIONS = ("archive", "quarantine", "reject")


@dataclass(frozen=True, slots=True)
class RuleAction:
    """What a matching rule does.

    Parameters
    ----------
    action
        ARCHIVE, QUARANTINE or REJECT.
    project
        Target project (ARCHIVE only).
    reason
        Reason text (QUARANTINE and REJECT only).
    labels
        Label mapping overriding the protocol default (ARCHIVE only).
    """

    action: Action
    project: str | None = None
    reason: str | None = None
    labels: LabelMapping | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule of a protocol."""

    ref: RuleRef
    when: Condition
    then: RuleAction
    description: str | None = None


@dataclass(frozen=True, slots=True)
class SortingProtocol:
    """A validated, ordered list of rules plus the default label mapping."""

    rules: tuple[Rule, ...]
    labels: LabelMapping = PRESETS["dasher"]

    def match(self, header: Dataset, origin: Origin) -> Rule | None:
        """Return the first rule matching the header and origin, or None."""
        return next((r for r in self.rules if r.when.matches(header, origin)), None)

    def route(self, header: Dataset, origin: Origin) -> Decision:
        """Decide for one instance: first match wins, no match quarantines."""
        rule = self.match(header, origin)
        if rule is None:
            reason = Reason(ReasonCode.NO_RULE_MATCHED, "no rule matched")
            return Decision.quarantine([reason], why=f"none of {len(self.rules)} rules matched")
        why = f"{rule.ref} matched: {rule.when.describe()}"
        then = rule.then
        if then.action is Action.ARCHIVE and then.project:
            labels = labels_for(header, then.labels or self.labels)
            return Decision.archive(then.project, labels, rule=rule.ref, why=why)
        details: dict[str, object] = {"rule": rule.ref.name, "index": rule.ref.index}
        if then.action is Action.REJECT:
            reason = Reason(ReasonCode.RULE_REJECT, then.reason or "rejected", details)
            return Decision.reject([reason], rule=rule.ref, why=why)
        reason = Reason(ReasonCode.RULE_QUARANTINE, then.reason or "quarantined", details)
        return Decision.quarantine([reason], rule=rule.ref, why=why)

    def route_session(self, headers: Sequence[Dataset], origin: Origin) -> Decision:
        """Decide for a staging session from the decisions of all its instances.

        Parameters
        ----------
        headers
            The headers of every instance of the session.
        origin
            The session's origin.

        Returns
        -------
        Decision
            The common decision, or a QUARANTINE listing the outcomes when they differ.
        """
        if not headers:
            raise RulesError("a session needs at least one instance header", key="headers")
        decisions = [self.route(header, origin) for header in headers]
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, decision in enumerate(decisions):
            groups.setdefault(_outcome(decision), []).append(i)
        if len(groups) == 1:
            return _merge_agreeing(decisions)
        return _mixed(decisions, list(groups.values()), headers)


def _outcome(decision: Decision) -> tuple[object, ...]:
    labels = decision.labels
    return (
        decision.action,
        decision.project,
        labels.subject if labels else None,
        labels.session if labels else None,
    )


def _merge_agreeing(decisions: list[Decision]) -> Decision:
    first = decisions[0]
    # Reasons hold dicts (unhashable), so they are deduplicated on code and message.
    merged = list({(r.code, r.message): r for d in decisions for r in d.reasons}.values())
    rules = list(dict.fromkeys(str(d.rule) for d in decisions if d.rule))
    why = first.why if len(rules) <= 1 else f"{', '.join(rules)} matched with the same outcome"
    if first.action is Action.ARCHIVE:
        return Decision.archive(first.project or "", first.labels, rule=first.rule, why=why)
    if first.action is Action.REJECT:
        return Decision.reject(merged, rule=first.rule, why=why)
    return Decision.quarantine(merged, rule=first.rule, why=why)


def _mixed(
    decisions: list[Decision], groups: list[list[int]], headers: Sequence[Dataset]
) -> Decision:
    outcomes: list[dict[str, object]] = []
    for variant, members in enumerate(groups):
        sample = decisions[members[0]]
        outcomes.append(
            {
                "action": sample.action.value,
                "project": sample.project,
                "label_variant": variant,
                "rule": sample.rule.name if sample.rule else None,
                "index": sample.rule.index if sample.rule else None,
                "reasons": sorted({r.code.value for r in sample.reasons}),
                "count": len(members),
                "sop_instance_uids": [str(headers[i].get("SOPInstanceUID", "")) for i in members],
            }
        )
    summary = ", ".join(
        f"{o['count']} x {o['action']} {o['project'] or ''}".strip() for o in outcomes
    )
    reason = Reason(
        ReasonCode.RULE_QUARANTINE,
        "instances of this session were routed differently",
        {"outcomes": outcomes},
    )
    return Decision.quarantine([reason], why=f"instances were routed differently: {summary}")


def load_protocol(source: str | Mapping[str, object]) -> SortingProtocol:
    """Validate a sorting protocol from YAML text or an already-loaded mapping.

    Parameters
    ----------
    source
        YAML text, or the mapping it would load to.

    Returns
    -------
    SortingProtocol
        The validated protocol.

    Raises
    ------
    ProtocolError
        Naming the rule (``rule 'name' (rules[i])``) and the key of the first problem found.
    """
    data = _load_yaml(source) if isinstance(source, str) else source
    if not isinstance(data, Mapping):
        raise ProtocolError("a protocol must be a mapping with a 'rules' list")
    for key in data:
        if key not in _TOP_KEYS:
            raise ProtocolError(f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})", key=key)
    if data.get("version", 1) != 1:
        raise ProtocolError("only version 1 is supported", key="version")
    labels = parse_label_mapping(data.get("labels", "dasher"), key="labels")
    items = data.get("rules")
    if not isinstance(items, list) or not items:
        raise ProtocolError("needs a non-empty list of rules", key="rules")
    rules = tuple(_parse_rule(item, i) for i, item in enumerate(items))
    _check_unique_names(rules)
    return SortingProtocol(rules, labels)


def _load_yaml(text: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProtocolError(f"not valid YAML: {exc}") from exc


def _parse_rule(item: object, index: int) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(item, Mapping):
        raise ProtocolError("a rule must be a mapping", rule=where)
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ProtocolError("'name' must be a non-empty string", rule=where, key="name")
    ref = RuleRef(index, name)
    for key in item:
        if key not in _RULE_KEYS:
            known = ", ".join(sorted(_RULE_KEYS))
            raise ProtocolError(f"unknown key (known: {known})", rule=str(ref), key=str(key))
    when = parse_condition(item["when"], str(ref)) if "when" in item else Always()
    description = item.get("description")
    return Rule(ref, when, _parse_action(item, str(ref)), str(description) if description else None)


def _parse_action(item: Mapping[str, object], rule: str) -> RuleAction:
    present = [key for key in _ACTIONS if key in item]
    if len(present) != 1:
        problem = "missing action" if not present else "more than one action"
        raise ProtocolError(f"{problem}: give exactly one of {', '.join(_ACTIONS)}", rule=rule)
    key = present[0]
    value = item[key]
    if key == "archive":
        return _parse_archive(value, rule)
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(f"'{key}' needs a reason text", rule=rule, key=key)
    return RuleAction(Action(key), reason=value.strip())


def _parse_archive(value: object, rule: str) -> RuleAction:
    labels: LabelMapping | None = None
    project = value
    if isinstance(value, Mapping):
        for key in value:
            if key not in ("project", "labels"):
                raise ProtocolError(
                    "unknown key (known: labels, project)", rule=rule, key=f"archive.{key}"
                )
        project = value.get("project")
        if "labels" in value:
            labels = parse_label_mapping(value["labels"], rule=rule, key="archive.labels")
    key = "archive.project" if isinstance(value, Mapping) else "archive"
    if not isinstance(project, str) or not PROJECT_ID.fullmatch(project):
        message = f"project id {project!r} does not match [A-Za-z0-9_-]+"
        raise ProtocolError(message, rule=rule, key=key)
    if project == QUARANTINE_PROJECT:
        raise ProtocolError("use 'quarantine: reason' to quarantine", rule=rule, key=key)
    return RuleAction(Action.ARCHIVE, project=project, labels=labels)


def _check_unique_names(rules: tuple[Rule, ...]) -> None:
    seen: set[str] = set()
    for rule in rules:
        if rule.ref.name is not None:
            if rule.ref.name in seen:
                raise ProtocolError("duplicate rule name", rule=str(rule.ref), key="name")
            seen.add(rule.ref.name)
