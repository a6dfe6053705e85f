"""The prearchive through the real receiver: storescu pushes routed by calling AE, RT held."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from dicomgate.archive.models import StagingSession
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.integration.prearchive_support import (
    codes,
    ct,
    make_review,
    settle,
    storescu,
    with_protocol,
    write_folder,
)
from tests.unit.rules.rt_builders import build_rt_session

PROTOCOL = """
rules:
  - {name: tps, when: {origin: {calling_ae: TPS}}, archive: RT}
  - {name: ct-scanner, when: {all: [{Modality: CT}, {origin: {calling_ae: CT_1}}]}, archive: RT}
"""


@pytest.fixture()
def receiver(intake: Intake) -> Iterator[Receiver]:
    server = Receiver(load_settings(dicom_port=0, ae_title="DGTEST"), intake)
    yield server
    server.stop()


def _sessions(intake: Intake) -> list[StagingSession]:
    with intake.db.reader() as session:
        return list(session.scalars(select(StagingSession).order_by(StagingSession.pk)))


def test_routed_by_calling_ae_and_unmatched_quarantined(
    intake: Intake, receiver: Receiver, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "RT"}])
    review = with_protocol(review, tmp_path, PROTOCOL)
    storescu(receiver.port, write_folder(tmp_path, "a", [ct(), ct(PatientID="P3")]), "CT_1")
    storescu(receiver.port, write_folder(tmp_path, "b", [ct(PatientID="P2")]), "WORKSTATION")
    settle(review)
    first, second, third = _sessions(intake)
    assert [(s.status, s.project_id) for s in (first, second)] == [
        ("ARCHIVED", "RT"),
        ("ARCHIVED", "RT"),
    ]
    assert (third.status, third.project_id, codes(third)) == (
        "ARCHIVED",
        "QUARANTINE",
        ["no_rule_matched"],
    )


def test_rt_pushed_before_its_images_is_released(
    intake: Intake, receiver: Receiver, tmp_path: Path
) -> None:
    review = with_protocol(
        make_review(intake, tmp_path, projects=[{"id": "RT"}]), tmp_path, PROTOCOL
    )
    rt = build_rt_session("pushed")
    storescu(receiver.port, write_folder(tmp_path, "rt", [rt.struct, rt.plan, rt.dose]), "TPS")
    settle(review)
    (held,) = _sessions(intake)
    assert held.status == "ERROR" and codes(held) == ["rt_references_missing"]
    storescu(receiver.port, write_folder(tmp_path, "ct", rt.images), "CT_1")
    settle(review)
    (released,) = _sessions(intake)
    assert (released.pk, released.status, released.project_id) == (held.pk, "ARCHIVED", "RT")
    assert released.instance_count == 6
