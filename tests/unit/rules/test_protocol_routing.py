"""Routing instances and sessions: first match wins, no match quarantines, sessions agree."""

from __future__ import annotations

from pathlib import Path

import pytest

import dicomgate.rules
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.reasons import ReasonCode
from dicomgate.rules import Action, RuleRef, RulesError, SortingProtocol, load_protocol

from .rt_builders import make_header

PROTOCOL = """
rules:
  - name: reject-sc
    when: {SOPClassUID: 1.2.840.10008.5.1.4.1.1.7}
    reject: secondary capture
  - name: ct
    when: {Modality: CT}
    archive: {project: CT_PROJ, labels: patient_id_accession}
  - name: mr
    when: {Modality: MR}
    archive: MR_PROJ
  - name: mr-again
    when: {Modality: MR}
    archive: NEVER
  - when: {Modality: PT}
    quarantine: PET not yet validated
"""


@pytest.fixture
def protocol() -> SortingProtocol:
    return load_protocol(PROTOCOL)


def test_first_matching_rule_wins(protocol: SortingProtocol, scanner_origin: Origin) -> None:
    decision = protocol.route(make_header(Modality="MR"), scanner_origin)
    assert decision.action is Action.ARCHIVE
    assert decision.project == "MR_PROJ"
    assert decision.rule == RuleRef(2, "mr")
    assert decision.why == "rule 'mr' (rules[2]) matched: Modality == 'MR'"
    assert decision.labels is not None
    assert (decision.labels.subject, decision.labels.session) == ("DOE_JANE", "P0001")


def test_rule_label_mapping_overrides_the_default(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    header = make_header(Modality="CT", AccessionNumber="ACC 7")
    labels = protocol.route(header, scanner_origin).labels
    assert labels is not None
    assert (labels.subject, labels.session) == ("P0001", "ACC_7")


def test_reject_and_quarantine_actions_carry_reasons(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    rejected = protocol.route(make_header(SOPClassUID="1.2.840.10008.5.1.4.1.1.7"), scanner_origin)
    assert rejected.action is Action.REJECT
    assert rejected.project is None
    assert [(r.code, r.message) for r in rejected.reasons] == [
        (ReasonCode.RULE_REJECT, "secondary capture")
    ]
    assert rejected.reasons[0].details == {"rule": "reject-sc", "index": 0}
    held = protocol.route(make_header(Modality="PT"), scanner_origin)
    assert held.action is Action.QUARANTINE
    assert held.project == "QUARANTINE"
    assert held.reasons[0].code is ReasonCode.RULE_QUARANTINE
    assert held.rule == RuleRef(4)


def test_unmatched_instance_is_quarantined(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    decision = protocol.route(make_header(Modality="US"), scanner_origin)
    assert decision.action is Action.QUARANTINE
    assert decision.project == "QUARANTINE"
    assert decision.rule is None
    assert [(r.code, r.message) for r in decision.reasons] == [
        (ReasonCode.NO_RULE_MATCHED, "no rule matched")
    ]


def test_session_whose_instances_agree_takes_their_decision(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    headers = [make_header(Modality="MR") for _ in range(3)]
    decision = protocol.route_session(headers, scanner_origin)
    assert decision.action is Action.ARCHIVE
    assert decision.project == "MR_PROJ"


def test_session_quarantined_by_several_rules_merges_reasons(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    headers = [make_header(Modality="PT"), make_header(Modality="US"), make_header(Modality="US")]
    decision = protocol.route_session(headers, scanner_origin)
    assert decision.action is Action.QUARANTINE
    assert [r.code for r in decision.reasons] == [
        ReasonCode.RULE_QUARANTINE,
        ReasonCode.NO_RULE_MATCHED,
    ]


def test_session_whose_instances_disagree_is_quarantined_with_the_list(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    headers = [make_header(Modality="MR"), make_header(Modality="MR"), make_header(Modality="CT")]
    decision = protocol.route_session(headers, scanner_origin)
    assert decision.action is Action.QUARANTINE
    (reason,) = decision.reasons
    assert reason.code is ReasonCode.RULE_QUARANTINE
    outcomes = reason.details["outcomes"]
    assert isinstance(outcomes, list)
    assert [(o["action"], o["project"], o["rule"], o["count"]) for o in outcomes] == [
        ("archive", "MR_PROJ", "mr", 2),
        ("archive", "CT_PROJ", "ct", 1),
    ]
    assert outcomes[1]["sop_instance_uids"] == [str(headers[2].SOPInstanceUID)]
    assert "routed differently" in decision.why


def test_session_with_differing_labels_is_quarantined(
    protocol: SortingProtocol, scanner_origin: Origin
) -> None:
    headers = [make_header(Modality="MR"), make_header(Modality="MR", PatientID="OTHER")]
    decision = protocol.route_session(headers, scanner_origin)
    assert decision.action is Action.QUARANTINE
    assert "DOE" not in str(decision.to_json())  # no PHI in the outcome list


def test_empty_session_is_an_error(protocol: SortingProtocol, scanner_origin: Origin) -> None:
    with pytest.raises(RulesError, match="at least one"):
        protocol.route_session([], scanner_origin)


@pytest.fixture
def example() -> SortingProtocol:
    path = Path(dicomgate.rules.__file__).with_name("example-protocol.yaml")
    return load_protocol(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("attributes", "origin", "action", "project", "rule"),
    [
        (
            {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "Modality": "OT"},
            None,
            Action.REJECT,
            None,
            "no-secondary-capture",
        ),
        ({"Modality": "US"}, None, Action.QUARANTINE, "QUARANTINE", "allowed-modalities"),
        (
            {"ManufacturerModelName": "LegacyScan 1000", "StudyDescription": "RESEARCH LUNG01"},
            None,
            Action.QUARANTINE,
            "QUARANTINE",
            "excluded-scanner-models",
        ),
        (
            {"Modality": "RTSTRUCT"},
            Origin(OriginKind.DIMSE, remote_ae="TPS_PLANNING"),
            Action.ARCHIVE,
            "RT_PLANNING",
            "rt-from-planning-system",
        ),
        (
            {"StudyDescription": "Research LUNG01 baseline"},
            None,
            Action.ARCHIVE,
            "RESEARCH",
            "research-study-description",
        ),
        (
            {"StudyDescription": "CT THORAX"},
            None,
            Action.QUARANTINE,
            "QUARANTINE",
            "study-description-required",
        ),
        ({}, None, Action.QUARANTINE, "QUARANTINE", "study-description-required"),
    ],
)
def test_example_protocol_routes_sample_headers(
    example: SortingProtocol,
    scanner_origin: Origin,
    attributes: dict[str, str],
    origin: Origin | None,
    action: Action,
    project: str | None,
    rule: str,
) -> None:
    decision = example.route(make_header(**attributes), origin or scanner_origin)
    assert (decision.action, decision.project) == (action, project)
    assert decision.rule is not None
    assert decision.rule.name == rule
