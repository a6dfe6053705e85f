"""The prearchive through the real receiver: storescu pushes routed by calling AE, RT held."""

from __future__ import annotations

import os
import subprocess
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
    part10,
    settle,
    with_protocol,
)
from tests.unit.rules.rt_builders import build_rt_session

ENV = {**os.environ, "TCP_NODELAY": "1"}
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


def _push(port: int, folder: Path, calling: str) -> None:
    done = subprocess.run(
        ["storescu", "-aet", calling, "-aec", "DGTEST", "+sd", "127.0.0.1", str(port), str(folder)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def _folder(tmp: Path, name: str, datasets: list) -> Path:  # type: ignore[type-arg]
    folder = tmp / name
    folder.mkdir()
    for i, ds in enumerate(datasets):
        (folder / f"{i}.dcm").write_bytes(part10(ds))
    return folder


def _sessions(intake: Intake) -> list[StagingSession]:
    with intake.db.reader() as session:
        return list(session.scalars(select(StagingSession).order_by(StagingSession.pk)))


def test_routed_by_calling_ae_and_unmatched_quarantined(
    intake: Intake, receiver: Receiver, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "RT"}])
    review = with_protocol(review, tmp_path, PROTOCOL)
    _push(receiver.port, _folder(tmp_path, "a", [ct(), ct(PatientID="P3")]), "CT_1")
    _push(receiver.port, _folder(tmp_path, "b", [ct(PatientID="P2")]), "WORKSTATION")
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
    _push(receiver.port, _folder(tmp_path, "rt", [rt.struct, rt.plan, rt.dose]), "TPS")
    settle(review)
    (held,) = _sessions(intake)
    assert held.status == "ERROR" and codes(held) == ["rt_references_missing"]
    _push(receiver.port, _folder(tmp_path, "ct", rt.images), "CT_1")
    settle(review)
    (released,) = _sessions(intake)
    assert (released.pk, released.status, released.project_id) == (held.pk, "ARCHIVED", "RT")
    assert released.instance_count == 6
