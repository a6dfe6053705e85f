"""decide(): required headers -> protocol -> study cards -> RT links, one Decision per session."""

from __future__ import annotations

import json

import pytest
from pydicom import config
from pydicom.dataelem import DataElement

from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.reasons import ReasonCode
from dicomgate.rules import (
    Action,
    ArchivedUids,
    FindingCode,
    RequiredHeaders,
    SortingProtocol,
    decide,
    load_protocol,
    load_study_cards,
)
from dicomgate.rules.rt_links import RefKind

from .rt_builders import RtSession, make_header

TPS = Origin(OriginKind.DIMSE, remote_ae="TPS", called_ae="DICOMGATE")


@pytest.fixture
def protocol() -> SortingProtocol:
    return load_protocol(
        """
rules:
  - name: no-us
    when: {Modality: US}
    reject: ultrasound is not accepted
  - name: rt
    when: {origin: {calling_ae: TPS}}
    archive: RT
  - name: mr
    when: {Modality: MR}
    archive: BRAIN
"""
    )


def test_complete_rt_session_is_archived(protocol: SortingProtocol, rt_session: RtSession) -> None:
    decision = decide(rt_session.headers, TPS, protocol)
    assert (decision.action, decision.project, decision.reasons) == (Action.ARCHIVE, "RT", ())
    assert decision.rule is not None and decision.rule.name == "rt"


def test_missing_rt_references_quarantine_and_keep_the_proposed_project(
    protocol: SortingProtocol, rt_session: RtSession
) -> None:
    s = rt_session
    decision = decide([s.struct, s.plan, s.dose], TPS, protocol)
    assert decision.action is Action.QUARANTINE
    assert (decision.project, decision.proposed_project) == ("QUARANTINE", "RT")
    assert [r.code for r in decision.reasons] == [ReasonCode.RT_REFERENCES_MISSING]
    assert decision.labels is not None  # kept so a data manager can release the session
    assert "RT references missing" in decision.why


def test_rt_references_resolve_in_the_target_project_only(
    protocol: SortingProtocol, rt_session: RtSession
) -> None:
    s = rt_session
    images = ArchivedUids(
        instances=frozenset(str(i.SOPInstanceUID) for i in s.images),
        series=frozenset({str(s.images[0].SeriesInstanceUID)}),
    )
    later = [s.struct, s.plan, s.dose]
    assert decide(later, TPS, protocol, archived={"RT": images}).action is Action.ARCHIVE
    assert decide(later, TPS, protocol, archived={"OTHER": images}).action is Action.QUARANTINE

    def per_project(project: str) -> ArchivedUids | None:
        return images if project == "RT" else None

    assert decide(later, TPS, protocol, archived=per_project).action is Action.ARCHIVE


def test_all_reasons_are_collected(protocol: SortingProtocol, rt_session: RtSession) -> None:
    s = rt_session
    s.struct["StudyInstanceUID"] = DataElement(
        0x0020000D, "UI", "1.02", validation_mode=config.IGNORE
    )
    cards = load_study_cards(
        "project: RT\nrequired: true\ncards: [{name: c, match: {StationName: TPS1}}]"
    )
    required = RequiredHeaders.from_config(["AccessionNumber"])
    decision = decide(
        [s.struct, s.plan], TPS, protocol, required=required, study_cards={"RT": cards}
    )
    codes = [r.code for r in decision.reasons]
    assert codes.count(ReasonCode.MISSING_REQUIRED_HEADER) == 2
    assert ReasonCode.EQUIPMENT_NOT_COMPATIBLE in codes
    assert ReasonCode.RT_REFERENCES_MISSING in codes
    assert decision.proposed_project == "RT"
    json.dumps(decision.to_json())


def test_study_cards_assign_scan_metadata(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    cards = load_study_cards(
        "project: BRAIN\ncards: [{name: c, match: {StationName: MRC1},"
        " assign: [{regex: 'T1.*', set: {scan_type: T1w}}]}]"
    )
    header = make_header(
        StationName="MRC1", SeriesDescription="T1 MPRAGE", SeriesInstanceUID="1.2.5"
    )
    decision = decide([header], scanner_origin, protocol, study_cards={"BRAIN": cards})
    assert decision.action is Action.ARCHIVE
    assert decision.scans == {"1.2.5": {"scan_type": "T1w"}}


def test_cards_of_other_projects_do_not_apply(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    cards = load_study_cards(
        "project: RT\nrequired: true\ncards: [{name: c, match: {StationName: X}}]"
    )
    decision = decide([make_header()], scanner_origin, protocol, study_cards={"RT": cards})
    assert decision.action is Action.ARCHIVE


def test_reject_keeps_its_outcome_and_gains_reasons(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    decision = decide(
        [make_header(Modality="US", SeriesInstanceUID=None)], scanner_origin, protocol
    )
    assert decision.action is Action.REJECT
    assert [r.code for r in decision.reasons] == [
        ReasonCode.RULE_REJECT,
        ReasonCode.MISSING_REQUIRED_HEADER,
    ]


def test_unmatched_session_is_quarantined_and_rt_checked_against_nothing(
    protocol: SortingProtocol, rt_session: RtSession, scanner_origin: Origin
) -> None:
    asked: list[str] = []

    def archived(project: str) -> None:
        asked.append(project)

    decision = decide([rt_session.plan], scanner_origin, protocol, archived=archived)
    assert decision.action is Action.QUARANTINE
    assert decision.proposed_project is None
    assert [r.code for r in decision.reasons] == [
        ReasonCode.NO_RULE_MATCHED,
        ReasonCode.RT_REFERENCES_MISSING,
    ]
    assert asked == []


def test_shared_series_findings_are_warnings(
    protocol: SortingProtocol, rt_session: RtSession
) -> None:
    rt_session.dose.SeriesNumber = 1
    decision = decide(rt_session.headers, TPS, protocol)
    assert decision.action is Action.ARCHIVE
    assert [w.code for w in decision.warnings] == [FindingCode.RT_SHARED_SERIES_NUMBER]


def test_archived_lookup_kind_is_passed_through(
    protocol: SortingProtocol, rt_session: RtSession
) -> None:
    kinds: set[RefKind] = set()

    def lookup(kind: RefKind, uid: str) -> bool:
        kinds.add(kind)
        return True

    decision = decide([rt_session.struct], TPS, protocol, archived={"RT": lookup})
    assert decision.action is Action.ARCHIVE
    assert kinds == set(RefKind)
