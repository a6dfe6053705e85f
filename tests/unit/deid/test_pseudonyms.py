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
