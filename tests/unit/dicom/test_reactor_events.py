"""The event-driven DUL ignores a local abort once the association is already closing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.fsm import InvalidEventError

from dicomgate.dicom.reactor import EventDrivenDUL


@pytest.fixture()
def dul() -> Iterator[EventDrivenDUL]:
    provider = EventDrivenDUL(Association(AE(), "acceptor"))
    yield provider
    provider._wake_r.close()  # the reactor, never started here, would close them
    provider._wake_w.close()


@pytest.mark.parametrize("state", ["Sta1", "Sta13"])
def test_a_local_abort_while_closing_is_moot(dul: EventDrivenDUL, state: str) -> None:
    dul.state_machine.transition(state)
    dul._act("Evt15")  # a server stopping aborts an association the peer already closed
    assert dul.state_machine.current_state == state


def test_other_invalid_events_still_raise(dul: EventDrivenDUL) -> None:
    dul.state_machine.transition("Sta13")
    with pytest.raises(InvalidEventError):
        dul._act("Evt9")  # a P-DATA request while closing
