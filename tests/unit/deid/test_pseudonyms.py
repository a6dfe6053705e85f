from __future__ import annotations

import pytest
from deid_builders import SECRET_A, SECRET_B, ct_slice

from dicomgate.deid import PseudonymError
from dicomgate.deid.pseudonyms import (
    Identity,
    compare_identity,
    keyed_pseudonym,
    mapped_pseudonym,
    mapping_from_csv,
    mapping_from_pairs,
    normalise,
    sequential_pseudonym,
)

JOHN = Identity("ZQXJohn", "ZQXDoe", "", "19600215", "M")


def test_normalise_strips_accents_case_and_spaces() -> None:
    assert normalise("  José   d'Arc ") == "JOSE D'ARC"


def test_keyed_pseudonym_stable_in_project_and_differs_across() -> None:
    variant = Identity(" zqxjöhn ", "ZQXDOE", "", "19600215")
    a = keyed_pseudonym(SECRET_A, JOHN, prefix="P-")
    assert a.subject_id == keyed_pseudonym(SECRET_A, variant, prefix="P-").subject_id
    assert a.subject_id != keyed_pseudonym(SECRET_B, JOHN, prefix="P-").subject_id
    assert a.subject_id.startswith("P-") and len(a.subject_id) == 18
    assert set(a.component_hashes) == {"first_name", "last_name", "birth_date"}


def test_component_hashes_allow_partial_linkage() -> None:
    married = Identity("ZQXJohn", "ZQXSmith", "ZQXDoe", "19600215")
    a, b = keyed_pseudonym(SECRET_A, JOHN), keyed_pseudonym(SECRET_A, married)
    assert a.subject_id != b.subject_id
    assert a.component_hashes["first_name"] == b.component_hashes["first_name"]


def test_sequential_and_mapped() -> None:
    assert sequential_pseudonym("SUBJ-", 1) == "SUBJ-0001"
    mapping = mapping_from_csv("original,pseudonym\nPIDQ778899,S-7\n")
    assert mapped_pseudonym(mapping, "PIDQ778899") == "S-7"
    with pytest.raises(PseudonymError):
        mapped_pseudonym(mapping, "other")
    with pytest.raises(PseudonymError, match="columns"):
        mapping_from_csv("a,b\n1,2\n")


def test_compare_identity_lists_mismatches_without_values() -> None:
    ds = ct_slice(0)
    assert compare_identity(JOHN, ds) == []
    ds.PatientSex = "F"
    ds.PatientBirthDate = "19600216"
    ds.PatientBirthName = None
    other = Identity("ZQXJohn", "ZQXDoe", "ZQXMAIDEN", "19600215", "M")
    fields = {(m.field, m.reason) for m in compare_identity(other, ds)}
    assert fields == {
        ("birth_date", "differs"),
        ("sex", "differs"),
        ("birth_name", "missing in dataset"),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("original,pseudonym\nPIDQ1,S^1\n", "line 2: at most 64 characters"),
        ("original,pseudonym\nPIDQ1,S\\1\n", "line 2: at most 64"),
        (f"original,pseudonym\nPIDQ1,{'S' * 65}\n", "line 2: at most 64"),
        ("original,pseudonym\nPIDQ1,S-1\nPIDQ1,S-2\n", "line 3: empty or duplicate"),
        ("original,pseudonym\nPIDQ1\n", "line 2: empty or duplicate"),
        ('original,pseudonym\n"PIDQ1,S-1\n', "not valid CSV|line 2"),
    ],
)
def test_bad_mapping_csv_names_the_line_without_the_value(text: str, message: str) -> None:
    with pytest.raises(PseudonymError, match=message) as caught:
        mapping_from_csv(text)
    assert "PIDQ1" not in str(caught.value)


def test_mapping_from_json_pairs() -> None:
    assert mapping_from_pairs({" PIDQ1 ": " S-1 ", "PIDQ2": "S-2"}) == {
        "PIDQ1": "S-1",
        "PIDQ2": "S-2",
    }
    for bad in ({"PIDQ1": 7}, {"PIDQ1": ""}, {"": "S-1"}, {"PIDQ1": "A^B"}):
        with pytest.raises(PseudonymError, match="mapping entry 0") as caught:
            mapping_from_pairs(bad)
        assert "PIDQ1" not in str(caught.value)
    with pytest.raises(PseudonymError, match="entry 1: duplicate"):
        mapping_from_pairs({"PIDQ1": "S-1", " PIDQ1": "S-2"})
