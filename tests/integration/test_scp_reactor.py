"""The receiver's event-driven reactors still keep pynetdicom's timers and its protocol."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from dicomgate.dicom.reactor import EventDrivenAssociation
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES


@pytest.fixture()
def receiver(intake: Intake) -> Iterator[Receiver]:
    # One process, so the association we inspect is served here; a short network timeout.
    settings = load_settings(
        dicom_port=0,
        ae_title="DGTEST",
        dicom_network_timeout=0.5,
        dicom_receiver={"processes": 1},
    )
    server = Receiver(settings, intake)
    yield server
    server.stop()


def _scu() -> AE:
    ae = AE(ae_title="REACTOR")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    return ae


def test_plain_listener_serves_with_event_driven_reactors(receiver: Receiver) -> None:
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST")
    assert assoc.is_established
    try:
        [served] = receiver.ae.active_associations
        assert isinstance(served, EventDrivenAssociation)
        # Several request/response exchanges on one association, then an orderly release.
        for _ in range(3):
            assert assoc.send_c_echo().Status == 0x0000
        ds = dcmread(PYDICOM_FILES / "CT_small.dcm")
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert assoc.is_released


def test_idle_association_is_aborted_at_the_network_timeout(receiver: Receiver) -> None:
    aborted: list[Any] = []
    handlers: list[Any] = [(evt.EVT_ABORTED, aborted.append)]
    assoc = _scu().associate("127.0.0.1", receiver.port, ae_title="DGTEST", evt_handlers=handlers)
    assert assoc.is_established
    deadline = time.monotonic() + 20  # generous: the timeout is 0.5 s, the reactor ticks 50 ms
    while (assoc.is_established or receiver.ae.active_associations) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not assoc.is_established
    assert assoc.is_aborted and len(aborted) == 1
    assert receiver.ae.active_associations == []
