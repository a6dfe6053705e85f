from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from dicomgate.deid import VaultError, VaultKeyError
from dicomgate.deid.pseudonyms import Identity
from dicomgate.deid.vault import IdentityVault
from dicomgate.deid.vaultkey import VaultKey

PLANTED = Identity("Zacharias", "Quixotewell", "Oldname", "19450101", "M")


@pytest.fixture
def key() -> VaultKey:
    return VaultKey(secrets.token_bytes(32))


@pytest.fixture
def vault(tmp_path: Path, key: VaultKey) -> IdentityVault:
    return IdentityVault(tmp_path / "vault.db", key, offset_range=(-30, 30))


def test_same_subject_same_keys_per_project_different_across(vault: IdentityVault) -> None:
    first = vault.get_or_create_subject("P1", PLANTED)
    assert (
        vault.get_or_create_subject(
            "P1", Identity(" zacharias", "QUIXOTEWELL", "oldname", "19450101")
        )
        == first
    )
    other = vault.get_or_create_subject("P2", PLANTED)
    assert first.pseudonym == "SUBJ-0001" and other.pseudonym == "SUBJ-0001"
    assert vault.get_or_create_subject("P1", Identity("A", "B")).pseudonym == "SUBJ-0002"
    _, offset = first
    assert -30 <= offset <= 30 and offset != 0


def test_given_pseudonym_is_used(vault: IdentityVault) -> None:
    assert (
        vault.get_or_create_subject("P1", PLANTED, pseudonym="HASH-AB12").pseudonym == "HASH-AB12"
    )


def test_reidentify_is_logged(vault: IdentityVault) -> None:
    pseudonym, _ = vault.get_or_create_subject("P1", PLANTED)
    assert vault.reidentify("P1", pseudonym, actor="alice", purpose="recall") == PLANTED
    log = vault.access_log()
    assert [(e.actor, e.action, e.pseudonym, e.purpose) for e in log] == [
        ("alice", "reidentify", pseudonym, "recall")
    ]


def test_uid_mapping_and_imports(vault: IdentityVault) -> None:
    vault.record_uid_mapping("P1", "1.2.3.4", "2.25.99")
    assert vault.original_uid("P1", "2.25.99", actor="bob") == "1.2.3.4"
    vault.record_import("P1", "SUBJ-0001", "imp-1", {"PatientName": "Quixotewell^Zacharias"})
    assert vault.import_data("P1", "imp-1", actor="bob") == {"PatientName": "Quixotewell^Zacharias"}
    assert len(vault.access_log()) == 2


def test_next_sequence_counts_per_project(vault: IdentityVault) -> None:
    assert [vault.next_sequence("P1"), vault.next_sequence("P1"), vault.next_sequence("P2")] == [
        1,
        2,
        1,
    ]


def test_wrong_key_fails_clearly(tmp_path: Path, key: VaultKey) -> None:
    IdentityVault(tmp_path / "v.db", key).close()
    with pytest.raises(VaultKeyError, match="does not open"):
        IdentityVault(tmp_path / "v.db", VaultKey(secrets.token_bytes(32)))
    IdentityVault(tmp_path / "v.db", key).close()


def test_raw_file_holds_no_planted_identity(tmp_path: Path, key: VaultKey) -> None:
    path = tmp_path / "v.db"
    with IdentityVault(path, key) as vault:
        pseudonym, _ = vault.get_or_create_subject("P1", PLANTED)
        vault.record_import("P1", pseudonym, "imp", {"name": "Quixotewell"})
        vault.record_uid_mapping("P1", "1.2.826.0.1.3680043.777", "2.25.1")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (
        b"Quixotewell",
        b"QUIXOTEWELL",
        b"Zacharias",
        b"Oldname",
        b"19450101",
        b"3680043.777",
    ):
        assert secret not in raw


def test_key_from_file_and_env(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    (tmp_path / "k.bin").write_bytes(raw)
    (tmp_path / "k.hex").write_text(raw.hex() + "\n")
    a = VaultKey.from_file(tmp_path / "k.bin")
    assert a.encryption == VaultKey.from_file(tmp_path / "k.hex").encryption
    assert a.lookup == VaultKey.from_env("VK", {"VK": raw.hex()}).lookup
    with pytest.raises(VaultKeyError, match="not set"):
        VaultKey.from_env("VK", {})
    with pytest.raises(VaultKeyError, match="32 bytes"):
        VaultKey(b"short")


def test_linked_identity_finds_the_subject_in_its_project_only(
    vault: IdentityVault, tmp_path: Path
) -> None:
    first = vault.get_or_create_subject("P1", PLANTED)
    misspelt = Identity("Zacharias", "Quixotewel", "Oldname", "19450101")
    assert vault.find_subject("P1", misspelt) is None
    assert vault.link_identity("P1", misspelt, first.pseudonym) is True
    assert vault.find_subject("P1", misspelt) == first
    assert vault.get_or_create_subject("P1", misspelt) == first  # no second subject
    assert vault.find_subject("P2", misspelt) is None
    assert vault.link_identity("P1", PLANTED, first.pseudonym) is False  # known already
    with pytest.raises(VaultError, match="no subject SUBJ-0042"):
        vault.link_identity("P1", Identity("A", "B"), "SUBJ-0042")
    assert vault.subject_by_pseudonym("P1", first.pseudonym) == first
    assert vault.subject_by_pseudonym("P1", "SUBJ-0042") is None
    assert b"Quixotewel" not in (tmp_path / "vault.db").read_bytes()


def test_study_mapping_only_adds_and_is_encrypted(vault: IdentityVault, tmp_path: Path) -> None:
    assert vault.add_mappings("P1", {"PIDQ5551": "S-1", "PIDQ5552": "S-2"}) == 2
    assert vault.add_mappings("P1", {" PIDQ5551 ": "S-1", "PIDQ5553": "S-3"}) == 1
    assert vault.mapped_pseudonym("P1", "PIDQ5553") == "S-3"
    assert vault.mapped_pseudonym("P2", "PIDQ5553") is None
    with pytest.raises(VaultError, match="mapped to S-1 would get S-9"):
        vault.add_mappings("P1", {"PIDQ5554": "S-4", "PIDQ5551": "S-9"})
    with pytest.raises(VaultError, match="S-2 is mapped to another subject"):
        vault.add_mappings("P1", {"PIDQ5555": "S-2"})
    assert vault.mapped_pseudonym("P1", "PIDQ5554") is None  # the refused call stored nothing
    assert vault.mapping_count("P1") == 3 and vault.mapping_count("P2") == 0
    assert b"PIDQ555" not in (tmp_path / "vault.db").read_bytes()


def test_component_hashes_are_kept_for_record_linkage(vault: IdentityVault) -> None:
    from dicomgate.deid.pseudonyms import keyed_pseudonym

    secret = vault.project_secret("P1")
    hashes = keyed_pseudonym(secret, PLANTED).component_hashes
    first = vault.get_or_create_subject("P1", PLANTED, component_hashes=hashes)
    vault.get_or_create_subject("P1", Identity("A", "B"))  # no hashes: never a candidate
    respelt = Identity("Zakarias", "Quixotewell", "Oldname", "19450101")
    found = vault.linked_subjects("P1", keyed_pseudonym(secret, respelt).component_hashes)
    assert found == {first.pseudonym: ["birth_date", "birth_name", "last_name"]}
    assert vault.linked_subjects("P2", hashes) == {}
