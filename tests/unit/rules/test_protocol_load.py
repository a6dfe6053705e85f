"""A malformed protocol fails at load with a message naming the rule and the key."""

from __future__ import annotations

from typing import Any

import pytest

from dicomgate.rules import ProtocolError, RulesError, load_protocol
from dicomgate.rules.errors import LabelMappingError


def one_rule(**rule: Any) -> dict[str, Any]:
    return {"rules": [{"name": "ok", "when": {"Modality": "CT"}, "archive": "P"}, rule]}


@pytest.mark.parametrize(
    ("rule", "key", "fragment"),
    [
        (
            {"name": "op", "when": {"Modality": {"like": "CT"}}, "archive": "P"},
            "when.Modality.like",
            "unknown operator",
        ),
        (
            {"name": "re", "when": {"StudyDescription": {"regex": "(unclosed"}}, "archive": "P"},
            "when.StudyDescription.regex",
            "bad regular expression",
        ),
        (
            {"name": "kw", "when": {"Modalty": "CT"}, "archive": "P"},
            "when.Modalty",
            "unknown DICOM keyword",
        ),
        (
            {"name": "date", "when": {"StudyDate": {"on_or_after": "2020-13-45"}}, "archive": "P"},
            "when.StudyDate.on_or_after",
            "bad date",
        ),
        (
            {"name": "date2", "when": {"StudyDate": {"on_or_before": 20201301}}, "archive": "P"},
            "when.StudyDate.on_or_before",
            "bad date",
        ),
        (
            {
                "name": "order",
                "when": {"StudyDate": {"on_or_after": 20210101, "on_or_before": 20200101}},
                "archive": "P",
            },
            "when.StudyDate.on_or_after",
            "later than",
        ),
        (
            {"name": "num", "when": {"SliceThickness": {"min": "thin"}}, "archive": "P"},
            "when.SliceThickness.min",
            "expected a number",
        ),
        (
            {"name": "range", "when": {"SliceThickness": {"min": 5, "max": 1}}, "archive": "P"},
            "when.SliceThickness.min",
            "greater than",
        ),
        (
            {"name": "proj", "when": {"Modality": "CT"}, "archive": "my project"},
            "archive",
            "does not match",
        ),
        (
            {"name": "proj2", "when": {"Modality": "CT"}, "archive": {"project": "../etc"}},
            "archive.project",
            "does not match",
        ),
        (
            {
                "name": "proj3",
                "when": {"Modality": "CT"},
                "archive": {"project": "P", "label": "x"},
            },
            "archive.label",
            "unknown key",
        ),
        (
            {
                "name": "nest",
                "when": {"all": [{"Modality": "CT"}, {"any": [{"origin": {"calling": "X"}}]}]},
                "archive": "P",
            },
            "when.all[1].any[0].origin.calling",
            "unknown origin field",
        ),
        (
            {"name": "src", "when": {"origin": {"source": "carrier-pigeon"}}, "archive": "P"},
            "when.origin.source",
            "unknown source kind",
        ),
        (
            {"name": "under", "when": {"Modality": {"under": "/x"}}, "archive": "P"},
            "when.Modality.under",
            "unknown operator",
        ),
        ({"name": "all", "when": {"all": []}, "archive": "P"}, "when.all", "non-empty list"),
        (
            {"name": "oneof", "when": {"Modality": {"one_of": []}}, "archive": "P"},
            "when.Modality.one_of",
            "non-empty list",
        ),
        (
            {"name": "exists", "when": {"Modality": {"exists": "yes"}}, "archive": "P"},
            "when.Modality.exists",
            "true or false",
        ),
        ({"name": "empty", "when": {}, "archive": "P"}, "when", "non-empty mapping"),
        (
            {"name": "null", "when": {"Modality": None}, "archive": "P"},
            "when.Modality.equals",
            "string or number",
        ),
        ({"name": "reason", "when": {"Modality": "CT"}, "reject": ""}, "reject", "reason text"),
        (
            {"name": "extra", "when": {"Modality": "CT"}, "archive": "P", "then": 1},
            "then",
            "unknown key",
        ),
        (
            {"name": "q", "when": {"Modality": "CT"}, "archive": "QUARANTINE"},
            "archive",
            "quarantine",
        ),
        ({"name": "ok", "quarantine": "dup"}, "name", "duplicate rule name"),
    ],
)
def test_validation_error_names_rule_and_key(rule: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        load_protocol(one_rule(**rule))
    message = str(raised.value)
    assert f"rule '{rule['name']}' (rules[1])" in message
    assert f"key '{key}'" in message
    assert fragment in message
    assert raised.value.key == key


def test_missing_action_names_the_rule() -> None:
    with pytest.raises(ProtocolError, match=r"rule 'noop' \(rules\[1\]\): missing action"):
        load_protocol(one_rule(name="noop", when={"Modality": "CT"}))


def test_two_actions_are_refused() -> None:
    with pytest.raises(ProtocolError, match="more than one action"):
        load_protocol(one_rule(name="both", archive="P", reject="no"))


def test_unnamed_rule_is_named_by_its_index() -> None:
    with pytest.raises(ProtocolError) as raised:
        load_protocol({"rules": [{"archive": "P"}, {"when": {"Foo": 1}, "archive": "P"}]})
    assert str(raised.value).startswith("rules[1], key 'when.Foo'")


def test_bad_label_mapping_in_a_rule_names_rule_and_key() -> None:
    with pytest.raises(LabelMappingError) as raised:
        load_protocol(one_rule(name="lab", archive={"project": "P", "labels": {"subject": "Name"}}))
    assert "rule 'lab' (rules[1])" in str(raised.value)
    assert raised.value.key == "archive.labels.subject"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("rules: [", "not valid YAML"),
        ("- just a list", "must be a mapping"),
        ("rules: []", "key 'rules'"),
        ("version: 2\nrules: [{archive: P}]", "key 'version'"),
        ("rule: [{archive: P}]", "key 'rule'"),
        ("labels: nobody\nrules: [{archive: P}]", "unknown preset"),
    ],
)
def test_malformed_top_level(source: str, fragment: str) -> None:
    with pytest.raises(RulesError, match=fragment):
        load_protocol(source)


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="rules"):
        load_protocol({"rules": "none"})
