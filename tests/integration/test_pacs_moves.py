"""C-MOVEs in flight, shared through the index: ids, quarantine, cache; outcomes read back."""

from __future__ import annotations

import pytest

from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, receive, refuse
from dicomgate.sources import moves
from dicomgate.sources.moves import MoveRegistry, claim, release
from dicomgate.sources.pacs.arrivals import arrived
from tests.integration.prearchive_support import IMPORT, ct, part10

JOB = Origin(OriginKind.PACS, job_id="job-1", remote_ae="ORTHANC")
OTHER = Origin(OriginKind.PACS, job_id="job-2")


def test_another_process_finds_the_move_by_originator_ae_and_message_id(intake: Intake) -> None:
    sender, receiver = MoveRegistry(), MoveRegistry()  # one per process
    with sender.register(intake.db, "DICOMGATE ", JOB) as (msg_id, _move):
        found = receiver.lookup(intake.db, "DICOMGATE", msg_id)
        assert found is not None and found.origin == JOB
        assert receiver.lookup(intake.db, "OTHERAE", msg_id) is None
        assert receiver.lookup(intake.db, "DICOMGATE", msg_id % 0xFFFF + 1) is None


def test_the_sending_process_collects_what_its_own_receiver_stored(intake: Intake) -> None:
    registry = MoveRegistry()
    with registry.register(intake.db, "DICOMGATE", JOB) as (msg_id, move):
        assert registry.lookup(intake.db, "DICOMGATE", msg_id) is move


def test_an_ended_move_is_not_found_once_the_cache_expired(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moves, "CACHE_SECONDS", 0.0)
    sender, receiver = MoveRegistry(), MoveRegistry()
    with sender.register(intake.db, "DICOMGATE", JOB) as (msg_id, _move):
        assert receiver.lookup(intake.db, "DICOMGATE", msg_id) is not None
    assert receiver.lookup(intake.db, "DICOMGATE", msg_id) is None


def test_ids_rotate_and_an_ended_id_is_quarantined(intake: Intake) -> None:
    first_pk, first = claim(intake.db, "DICOMGATE", JOB)
    release(intake.db, first_pk)
    _pk, second = claim(intake.db, "DICOMGATE", OTHER)
    assert second == first % 0xFFFF + 1  # the next id, never the one just ended
    assert claim(intake.db, "OTHERAE", JOB)[1] == 1  # ids are per originator AE title


def test_a_reused_id_never_gives_a_cached_origin_of_the_previous_move(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moves, "_MAX_ID", 1)  # every move gets id 1: reuse at once
    monkeypatch.setattr(moves, "QUARANTINE_SECONDS", 0.0)
    monkeypatch.setattr(moves, "CACHE_SECONDS", 0.0)
    sender, receiver = MoveRegistry(), MoveRegistry()
    with sender.register(intake.db, "DICOMGATE", JOB) as (msg_id, _move):
        assert receiver.lookup(intake.db, "DICOMGATE", msg_id).origin == JOB  # type: ignore[union-attr]
        with pytest.raises(RuntimeError, match="in flight"):
            claim(intake.db, "DICOMGATE", OTHER)
    with sender.register(intake.db, "DICOMGATE", OTHER) as (again, _move):
        assert again == msg_id
        assert receiver.lookup(intake.db, "DICOMGATE", again).origin == OTHER  # type: ignore[union-attr]


def test_outcomes_of_stores_in_another_process_are_read_back(intake: Intake) -> None:
    stored, elsewhere, conflicting = (ct() for _ in range(3))
    refused = ct()
    assert receive(intake, part10(stored), JOB).outcome is Outcome.STORED
    assert receive(intake, part10(elsewhere), IMPORT).outcome is Outcome.STORED
    assert receive(intake, part10(conflicting), IMPORT).outcome is Outcome.STORED
    conflicting.PatientID = "CHANGED"
    assert receive(intake, part10(conflicting), JOB).outcome is Outcome.CONFLICTING
    uid = str(refused.SOPInstanceUID)
    refuse(intake, part10(refused), JOB, "not_wanted", "refused up front", uid)
    refuse(intake, part10(ct()), OTHER, "not_wanted", "another job's", "1.2.3.4")
    uids = [str(ds.SOPInstanceUID) for ds in (stored, elsewhere, conflicting, refused)]
    found = arrived(intake, JOB, [*uids, "1.2.3.4", "1.2.3.5"])
    assert {uid: result.outcome for uid, result in found.items()} == {
        uids[0]: Outcome.STORED,
        uids[1]: Outcome.ALREADY_STORED,
        uids[2]: Outcome.CONFLICTING,
        uids[3]: Outcome.REJECTED,
    }
    assert found[uids[3]].reason == "not_wanted: refused up front"
