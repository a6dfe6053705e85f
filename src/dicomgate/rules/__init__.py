"""Rules: decide where a staging session goes. Pure: no I/O, no settings, no database.

``decide`` composes the checks in this order and returns one ``Decision`` per session:

1. required headers (``required``): the four UIDs and configured attributes;
2. the sorting protocol (``protocol``): per instance, first match wins; a session whose instances
   disagree is quarantined (see ``rules.protocol``);
3. study cards of the target project (only when the protocol archives to a project that has
   cards): equipment check, and scan metadata assignment;
4. RT links: references from RT objects resolved against the session and against what the
   caller says is archived in the target project (nothing, when the protocol named no project).

Every check runs, so the Decision carries all reasons at once. The outcome is the protocol's,
except that an ARCHIVE with any reason from steps 1, 3 or 4 becomes a QUARANTINE remembering the
proposed project; a protocol QUARANTINE or REJECT keeps its outcome and gains the reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import replace

from pydicom.dataset import Dataset

from dicomgate.intake.origin import Origin
from dicomgate.rules.decision import Action, Decision, Finding, FindingCode, RuleRef
from dicomgate.rules.errors import LabelMappingError, ProtocolError, RulesError, StudyCardError
from dicomgate.rules.labels import LabelMapping, Labels, labels_for, sanitize_label
from dicomgate.rules.protocol import SortingProtocol, load_protocol
from dicomgate.rules.required import RequiredHeaders, check_required
from dicomgate.rules.rt_links import ArchivedLookup, ArchivedUids, check_rt_links
from dicomgate.rules.study_cards import (
    StudyCards,
    apply_cards,
    check_equipment,
    equipment_of,
    load_study_cards,
)

ArchivedByProject = (
    Callable[[str], ArchivedLookup | Set[str] | None] | Mapping[str, ArchivedLookup | Set[str]]
)

__all__ = [
    "Action",
    "ArchivedUids",
    "Decision",
    "Finding",
    "FindingCode",
    "LabelMapping",
    "LabelMappingError",
    "Labels",
    "ProtocolError",
    "RequiredHeaders",
    "RuleRef",
    "RulesError",
    "SortingProtocol",
    "StudyCardError",
    "StudyCards",
    "apply_cards",
    "decide",
    "equipment_of",
    "labels_for",
    "load_protocol",
    "load_study_cards",
    "sanitize_label",
]


def decide(
    headers: Sequence[Dataset],
    origin: Origin,
    protocol: SortingProtocol,
    *,
    required: RequiredHeaders | None = None,
    study_cards: Mapping[str, StudyCards] | None = None,
    archived: ArchivedByProject | None = None,
) -> Decision:
    """Decide for one staging session.

    Parameters
    ----------
    headers
        Every instance header of the session (read without pixel data).
    origin
        Where the session came from.
    protocol
        The validated sorting protocol.
    required
        Extra required attributes; only the four UIDs when omitted.
    study_cards
        Study cards by project id.
    archived
        What is archived per project: a mapping or a callable from project id to a lookup
        (``ArchivedUids``, a ``(kind, uid) -> bool`` callable or a set of UIDs).

    Returns
    -------
    Decision
        The session's decision with all reasons, findings and assigned scan metadata.
    """
    routed = protocol.route_session(headers, origin)
    target = routed.project if routed.action is Action.ARCHIVE else None
    decision = routed.held_back(check_required(headers, required), "required headers failed")
    cards = (study_cards or {}).get(target) if target else None
    scans: dict[str, Mapping[str, str]] = {}
    if cards is not None:
        decision = decision.held_back(check_equipment(cards, headers), "no study card matched")
        scans = {uid: a.metadata for uid, a in apply_cards(cards, headers).items() if a.metadata}
    report = check_rt_links(headers, _archived_in(archived, target))
    decision = decision.held_back(report.reasons(), "RT references missing")
    return replace(decision, warnings=decision.warnings + report.shared_series, scans=scans)


def _archived_in(
    archived: ArchivedByProject | None, project: str | None
) -> ArchivedLookup | Set[str] | None:
    if archived is None or project is None:
        return None
    if isinstance(archived, Mapping):
        return archived.get(project)
    return archived(project)
