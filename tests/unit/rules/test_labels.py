"""Label conventions and label sanitising."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomgate.rules import LabelMapping, labels_for, sanitize_label
from dicomgate.rules.errors import LabelMappingError
from dicomgate.rules.labels import PRESETS, parse_label_mapping, parse_xnat_comments

from .rt_builders import make_header

LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}")


@pytest.fixture
def header() -> Any:
    return make_header(
        PatientName="Müller^Hans",
        PatientID="PID-0042",
        AccessionNumber="ACC 0099",
        StudyID="S7",
        StudyDate="20240131",
    )


@pytest.mark.parametrize(
    ("preset", "subject", "session"),
    [
        ("dasher", "Muller_Hans", "PID-0042"),
        ("patient_id_accession", "PID-0042", "ACC_0099"),
        ("patient_id_study_id", "PID-0042", "S7"),
        ("patient_id_study_date", "PID-0042", "20240131"),
    ],
)
def test_attribute_conventions(header: Any, preset: str, subject: str, session: str) -> None:
    labels = labels_for(header, parse_label_mapping(preset))
    assert (labels.subject, labels.session, labels.project) == (subject, session, None)


def test_original_values_are_kept(header: Any) -> None:
    labels = labels_for(header, PRESETS["patient_id_accession"])
    assert labels.original["subject"] == "PID-0042"
    assert labels.original["session"] == "ACC 0099"
    assert labels.sources == {"subject": "PatientID", "session": "AccessionNumber"}


def test_default_mapping_is_dasher(header: Any) -> None:
    labels = labels_for(header)
    assert (labels.subject, labels.session) == ("Muller_Hans", "PID-0042")
    assert labels.original["subject"] == "Müller^Hans"


@pytest.mark.parametrize(
    "comments",
    [
        "Project: LUNG Subject: S01 Session: S01_MR1",
        "project:LUNG;subject:S01;session:S01_MR1",
        "PROJECT: LUNG; SUBJECT: S01; SESSION: S01_MR1",
        "Project:LUNG;Subject:S01;Session:S01_MR1;",
        "scanned by X. Project: LUNG\nSubject: S01\nSession: S01_MR1",
    ],
)
def test_xnat_comments_convention(comments: str) -> None:
    header = make_header(PatientComments=comments)
    labels = labels_for(header, PRESETS["xnat_patient_comments"])
    assert (labels.project, labels.subject, labels.session) == ("LUNG", "S01", "S01_MR1")
    assert labels.sources["subject"] == "PatientComments"


def test_xnat_study_comments_and_fallback_for_missing_keys() -> None:
    header = make_header(StudyComments="Project: LUNG Session: V2")
    labels = labels_for(header, PRESETS["xnat_study_comments"])
    assert (labels.project, labels.subject, labels.session) == ("LUNG", "DOE_JANE", "V2")
    assert labels.sources == {"subject": "PatientName", "session": "StudyComments"}


def test_parse_xnat_comments_ignores_other_text() -> None:
    assert parse_xnat_comments("no labels here") == {}
    assert parse_xnat_comments(None) == {}
    assert parse_xnat_comments("Subject: A Subject: B") == {"subject": "A"}


def test_custom_mapping_from_a_dict() -> None:
    mapping = parse_label_mapping({"subject": "StudyID", "session": "StudyDate", "fallback": "NA"})
    labels = labels_for(make_header(StudyID="7"), mapping)
    assert (labels.subject, labels.session) == ("7", "NA")


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("acme", "labels"),
        ({"subject": "PatientSex"}, "labels.subject"),
        ({"fallback": "../x"}, "labels.fallback"),
        ({"fallback": ""}, "labels.fallback"),
        ({"max_length": 65}, "labels.max_length"),
        ({"colour": "blue"}, "labels.colour"),
        (3, "labels"),
    ],
)
def test_bad_mapping_names_the_key(value: object, key: str) -> None:
    with pytest.raises(LabelMappingError) as raised:
        parse_label_mapping(value, rule="rule 'r' (rules[0])")
    assert raised.value.key == key
    assert str(raised.value).startswith(f"rule 'r' (rules[0]), key '{key}'")


def test_label_mapping_is_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        LabelMapping().subject = "PatientID"  # type: ignore[misc, assignment]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../etc", "etc"),
        ("../../etc/passwd", "etc_passwd"),
        ("DOE^JOHN", "DOE_JOHN"),
        ("  John   Smith  ", "John_Smith"),
        ("Zoë Ångström", "Zoe_Angstrom"),
        ("山田^太郎", "UNKNOWN"),
        ("Yamada^Tarou=山田^太郎", "Yamada_Tarou"),
        ("", "UNKNOWN"),
        (None, "UNKNOWN"),
        ("___", "UNKNOWN"),
        ("a\\b/c", "a_b_c"),
        ("x" * 100, "x" * 64),
        ("ok-label_1", "ok-label_1"),
    ],
)
def test_sanitize_label(raw: str | None, clean: str) -> None:
    assert sanitize_label(raw) == clean


def test_truncation_never_leaves_a_trailing_separator() -> None:
    assert sanitize_label("a" * 63 + " b") == "a" * 63


def test_absent_attribute_gives_the_fallback() -> None:
    labels = labels_for(make_header(PatientName=None, PatientID=None))
    assert (labels.subject, labels.session) == ("UNKNOWN", "UNKNOWN")
    assert labels.original == {"subject": None, "session": None, "project": None}


@settings(database=None)
@given(st.text())
def test_sanitized_label_is_always_a_safe_path_component(raw: str) -> None:
    label = sanitize_label(raw)
    assert LABEL.fullmatch(label)
    assert ".." not in label and "/" not in label and "\\" not in label
    assert sanitize_label(label) == label


@settings(database=None)
@given(st.text(), st.integers(min_value=1, max_value=64))
def test_sanitized_label_respects_max_length(raw: str, max_length: int) -> None:
    assert 1 <= len(sanitize_label(raw, max_length=max_length)) <= max(max_length, len("UNKNOWN"))
