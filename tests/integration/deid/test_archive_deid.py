"""De-identification on the archive path, on SQLite and PostgreSQL, with a real vault file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicomgate.deid import check_references
from dicomgate.deid.errors import VaultKeyError
from dicomgate.deid.pseudonyms import Identity
from dicomgate.deid.vaultkey import VaultKey
from tests.integration.deid.conftest import BOTH_DATABASES, RESEARCH, Site
from tests.unit.deid.deid_builders import ROOT, ct_slice, patient, rt_chain

LEAKS = (b"ZQX", b"PIDQ778899", b"ACCQ4455", ROOT.encode())
MakeSite = Callable[..., Site]


def _date(value: str) -> dt.date:
    return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))


def _all_blob_bytes(site: Site) -> list[bytes]:
    root = site.review.settings.data_dir / "blobs"
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


@BOTH_DATABASES
def test_rt_chain_is_archived_deidentified_and_still_linked(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    source = rt_chain()
    assert check_references(source) == []
    site.send(source, "RESEARCH")
    site.run()
    [archived] = site.sessions("RESEARCH")
    assert archived.subject_label == "SUBJ-0001"
    assert archived.label.startswith("SUBJ-0001_")
    assert archived.original == {}
    stored = site.stored(archived)
    assert len(stored) == 6
    assert check_references(stored) == []  # RT chain linked after the UIDs were replaced
    assert {ds.PatientID for ds in stored} == {"SUBJ-0001"}
    assert all(ds.PatientIdentityRemoved == "YES" for ds in stored)
    assert not {ds.SOPInstanceUID for ds in stored} & {ds.SOPInstanceUID for ds in source}
    # Only the de-identified copy is left in the blob store: a byte search finds no identity.
    blobs = _all_blob_bytes(site)
    assert len(blobs) == 6
    for data in blobs:
        for leak in LEAKS:
            assert leak not in data
    original, copy = site.staging()
    assert original.status == copy.status == "ARCHIVED"
    assert original.reasons[0]["code"] == "deidentified"
    assert not original.study_uid.startswith(ROOT)


def test_vault_holds_identity_uids_and_import(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send(rt_chain(), "RESEARCH")
    site.run()
    [archived] = site.sessions("RESEARCH")
    stored = site.stored(archived)
    with site.vault() as vault:
        identity = vault.reidentify("RESEARCH", "SUBJ-0001", actor="test", purpose="check")
        assert (identity.last_name, identity.first_name) == ("ZQXDOE", "ZQXJOHN")
        back = vault.original_uid("RESEARCH", str(stored[0].StudyInstanceUID), actor="test")
        assert back == f"{ROOT}.1"
        imports = [e for e in vault.access_log() if e.action == "reidentify"]
        assert len(imports) == 1
    vault_bytes = (site.review.settings.data_dir / "identity-vault.sqlite3").read_bytes()
    for leak in LEAKS:
        assert leak not in vault_bytes  # encrypted at rest


def test_vault_unreadable_without_its_key(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    with pytest.raises(VaultKeyError, match="does not open this vault"):
        site.vault(VaultKey(b"\x01" * 32))


@BOTH_DATABASES
def test_same_patient_twice_keeps_pseudonym_and_offset(make_site: MakeSite) -> None:
    profile = {"name": "longitudinal", "dates": "shift"}
    site = make_site({"id": "RESEARCH", "deid": {"profile": profile}})
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    follow_up = ct_slice(1)
    follow_up.StudyInstanceUID, follow_up.SeriesInstanceUID = f"{ROOT}.50", f"{ROOT}.50.1"
    follow_up.SOPInstanceUID = f"{ROOT}.50.1.1"
    follow_up.file_meta.MediaStorageSOPInstanceUID = follow_up.SOPInstanceUID
    follow_up.StudyDate = "20240412"  # 31 days later
    site.send([follow_up], "RESEARCH")
    site.run()
    first, second = site.sessions("RESEARCH")
    assert first.subject_label == second.subject_label == "SUBJ-0001"
    assert first.label != second.label
    [a], [b] = site.stored(first), site.stored(second)
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert a.StudyDate != "20240312"  # shifted
    gap = _date(b.StudyDate) - _date(a.StudyDate)
    assert gap.days == 31  # the same per-subject offset for both studies


def test_another_project_gets_other_pseudonym_keys_and_uids(make_site: MakeSite) -> None:
    second: dict[str, Any] = {
        "id": "RESEARCH2",
        "deid": {"profile": {}, "pseudonym": {"scheme": "keyed", "prefix": "R2-"}},
    }
    site = make_site(RESEARCH, second)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    site.send([ct_slice(0)], "RESEARCH2")  # the original again, into a second project
    site.run()
    [one], [two] = site.sessions("RESEARCH"), site.sessions("RESEARCH2")
    [a], [b] = site.stored(one), site.stored(two)
    assert a.PatientID == "SUBJ-0001"
    assert b.PatientID.startswith("R2-") and len(b.PatientID) == 19
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.StudyInstanceUID != b.StudyInstanceUID


@BOTH_DATABASES
def test_identity_mismatch_holds_the_session_with_both_values(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    confirmed = {"first_name": "Zqxjohn", "last_name": "Zqxdoe", "birth_date": "1960-02-16"}
    site.send([ct_slice(0)], "RESEARCH", confirmed_identity=confirmed)
    site.run()
    assert site.sessions("RESEARCH") == []
    [staging] = site.staging()
    assert staging.status == "CONFLICT"
    [reason] = staging.reasons
    assert reason["code"] == "identity_mismatch"
    assert reason["details"]["fields"] == [
        {"field": "birth_date", "confirmed": "19600216", "headers": "19600215"}
    ]
    assert site.blob_count() == 1  # the original is untouched, nothing was overwritten


def test_confirmed_identity_that_matches_lets_the_session_through(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    confirmed = {"first_name": "ZQXJOHN", "last_name": "ZQXDOE", "birth_name": "ZQXSMITH"}
    first = ct_slice(0)
    first.PatientBirthName = "ZQXSMITH"
    site.send([first], "RESEARCH", confirmed_identity=confirmed)
    site.run()
    [archived] = site.sessions("RESEARCH")
    with site.vault() as vault:
        headers = Identity("ZQXJOHN", "ZQXDOE", birth_name="ZQXSMITH", birth_date="19600215")
        found = vault.find_subject("RESEARCH", headers)
    assert found is not None and found.pseudonym == archived.subject_label


def test_burned_in_text_sends_the_session_to_quarantine(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    us = ct_slice(0)
    us.Modality = "US"
    site.send([us], "RESEARCH")
    site.run()
    assert site.sessions("RESEARCH") == []
    [quarantined] = site.sessions("QUARANTINE")
    assert quarantined.reasons[0]["code"] == "burned_in_annotation"
    assert quarantined.proposed_project == "RESEARCH"
    assert site.stored(quarantined)[0].PatientID == "PIDQ778899"  # the original, kept


def test_pixel_mask_lets_the_session_through_masked(make_site: MakeSite) -> None:
    mask = {"manufacturer": "ACME", "model": "Scanner 64", "rows": 8, "columns": 8,
            "rectangles": [{"x": 0, "y": 0, "width": 8, "height": 2}]}  # fmt: skip
    profile = {"name": "us", "pixel_masks": [mask]}
    site = make_site({"id": "RESEARCH", "deid": {"profile": profile}})
    us = ct_slice(0)
    us.Modality = "US"
    site.send([us], "RESEARCH")
    site.run()
    [archived] = site.sessions("RESEARCH")
    [ds] = site.stored(archived)
    assert ds.BurnedInAnnotation == "NO"
    assert not ds.pixel_array[:2].any() and ds.pixel_array[2:].all()


@BOTH_DATABASES
def test_identified_project_keeps_the_original(make_site: MakeSite) -> None:
    site = make_site({"id": "CLINIC"}, RESEARCH, identified_project="CLINIC")
    site.send(rt_chain(), "RESEARCH")
    site.run()
    [kept], [copy] = site.sessions("CLINIC"), site.sessions("RESEARCH")
    originals, copies = site.stored(kept), site.stored(copy)
    assert {ds.PatientID for ds in originals} == {"PIDQ778899"}
    assert {ds.PatientID for ds in copies} == {"SUBJ-0001"}
    assert check_references(originals) == check_references(copies) == []
    assert len(_all_blob_bytes(site)) == 12


def test_mapping_scheme_without_an_entry_holds_the_session(
    make_site: MakeSite, tmp_path: Path
) -> None:
    (tmp_path / "map.csv").write_text("original,pseudonym\nOTHER,S-9\n")
    pseudonym = {"scheme": "mapping", "mapping_file": str(tmp_path / "map.csv")}
    site = make_site({"id": "RESEARCH", "deid": {"profile": {}, "pseudonym": pseudonym}})
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    [staging] = site.staging()
    assert staging.status == "ERROR"
    assert staging.reasons[0]["code"] == "pseudonym_unavailable"
    assert site.sessions("RESEARCH") == []


def test_rt_object_later_still_points_at_the_archived_images(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    chain = rt_chain()
    site.send(chain[:3], "RESEARCH")  # the CT first
    site.run()
    site.send(chain[3:], "RESEARCH")  # then the RT objects, as a TPS pushes them later
    site.run()
    sessions = site.sessions("RESEARCH")
    stored = [ds for s in sessions for ds in site.stored(s)]
    assert len(stored) == 6
    assert check_references(stored) == []
    assert {s.subject_label for s in sessions} == {"SUBJ-0001"}


def test_patient_without_name_is_known_by_patient_id(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    one, two = ct_slice(0), patient(ct_slice(1))
    two.StudyInstanceUID, two.SeriesInstanceUID = f"{ROOT}.60", f"{ROOT}.60.1"
    two.SOPInstanceUID = f"{ROOT}.60.1.1"
    two.file_meta.MediaStorageSOPInstanceUID = two.SOPInstanceUID
    one.PatientName = two.PatientName = ""
    two.PatientID = "PIDQ000002"
    site.send([one], "RESEARCH")
    site.send([two], "RESEARCH")
    site.run()
    assert sorted(s.subject_label for s in site.sessions("RESEARCH")) == ["SUBJ-0001", "SUBJ-0002"]
