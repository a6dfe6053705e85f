"""A requesting association's reactor leaves the DIMSE queue to a caller that paused it."""

from __future__ import annotations

from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomgate.dicom.reactor import RequestorAE, keep_responses_for_the_caller

RESPONSE = (1, C_ECHO())  # the response a caller's C-ECHO waits for


def _on_reactor_thread(assoc: Association, turn: Any) -> None:
    # The association's own thread is its reactor; run one scripted turn on it.
    assoc.run = turn  # type: ignore[method-assign]
    assoc.start()
    assoc.join(5)
    assert not assoc.is_alive()


def test_a_reactor_paused_after_its_checkpoint_takes_nothing() -> None:
    assoc = Association(AE(), "requestor")
    keep_responses_for_the_caller(assoc)
    assoc.dimse.msg_queue.put(RESPONSE)
    seen: list[Any] = []

    def turn() -> None:
        # The race: the reactor passed the checkpoint, then the caller cleared it and sent.
        assoc._reactor_checkpoint.clear()
        seen.append(assoc.dimse.get_msg(block=False))
        assoc._reactor_checkpoint.set()  # the caller is done: requests are the reactor's again
        seen.append(assoc.dimse.get_msg(block=False))

    _on_reactor_thread(assoc, turn)
    assert seen == [(None, None), RESPONSE]


def test_the_caller_gets_its_response_while_the_reactor_is_paused() -> None:
    assoc = Association(AE(), "requestor")
    keep_responses_for_the_caller(assoc)
    assoc.dimse.msg_queue.put(RESPONSE)
    assoc._reactor_checkpoint.clear()
    assert assoc.dimse.get_msg(block=False) == RESPONSE


def test_requested_associations_are_guarded_and_still_work(echo_port: int) -> None:
    ae = RequestorAE(ae_title="DICOMGATE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", echo_port, ae_title="ECHOSCP")
    try:
        assert assoc.is_established
        assert "keep_responses_for_the_caller" in assoc.dimse.get_msg.__qualname__
        for _ in range(20):
            assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
