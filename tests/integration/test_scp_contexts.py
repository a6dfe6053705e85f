"""Every association negotiates from the receiver's own presentation contexts, never changing them.

The receiver hands each association its list of the server's context objects instead of a
deep copy (``scp._Contexts``): that is only safe while pynetdicom's negotiation reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
)
from pynetdicom import AE, build_role
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    Verification,
)

from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver


@pytest.fixture()
def receiver(intake: Intake) -> Iterator[Receiver]:
    settings = load_settings(dicom_port=0, ae_title="DGTEST", dicom_receiver={"processes": 1})
    server = Receiver(settings, intake)
    yield server
    server.stop()


def _server_contexts(receiver: Receiver) -> list[PresentationContext]:
    [server] = receiver.ae._servers
    contexts: list[PresentationContext] = server.contexts
    return contexts


def _snapshot(contexts: list[PresentationContext]) -> list[dict[str, Any]]:
    return [{**vars(cx), "_transfer_syntax": list(cx.transfer_syntax)} for cx in contexts]


def _associate(receiver: Receiver, ae: AE, **kwargs: Any) -> Any:
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="DGTEST", **kwargs)
    assert assoc.is_established
    return assoc


def test_associations_share_the_servers_contexts_and_leave_them_unchanged(
    receiver: Receiver,
) -> None:
    contexts = _server_contexts(receiver)
    before = _snapshot(contexts)

    # A compressed-only proposal, a proposal with role selection, one the receiver does not
    # support and an echo: negotiation answers each, every association from the same objects.
    picky = AE(ae_title="PICKY")
    picky.add_requested_context(CTImageStorage, [JPEG2000Lossless, JPEGLosslessSV1])
    picky.add_requested_context(MRImageStorage, [ImplicitVRLittleEndian])
    picky.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    roles = [build_role(CTImageStorage, scu_role=True, scp_role=True)]
    plain = AE(ae_title="PLAIN")
    plain.add_requested_context(Verification)
    plain.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])

    first = _associate(receiver, picky, ext_neg=roles)
    second = _associate(receiver, plain)
    try:
        served = receiver.ae.active_associations
        assert len(served) == 2
        lists = [assoc.acceptor.supported_contexts for assoc in served]
        assert lists[0] is not lists[1] and lists[0] is not contexts
        assert all(mine is theirs for mine, theirs in zip(lists[0], contexts, strict=True))

        accepted = {cx.abstract_syntax: cx for cx in first.accepted_contexts}
        assert accepted[CTImageStorage].transfer_syntax[0] in (JPEG2000Lossless, JPEGLosslessSV1)
        assert accepted[MRImageStorage].transfer_syntax == [ImplicitVRLittleEndian]
        refused = {cx.abstract_syntax for cx in first.rejected_contexts}
        assert refused == {PatientRootQueryRetrieveInformationModelFind}
        assert second.send_c_echo().Status == 0x0000
    finally:
        first.release()
        second.release()

    assert _snapshot(contexts) == before
