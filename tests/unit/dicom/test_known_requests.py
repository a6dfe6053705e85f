"""A-ASSOCIATE-RQ PDUs decoded once per distinct request (``dicom.known_requests``)."""

from __future__ import annotations

import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
)

from dicomgate.dicom import known_requests
from dicomgate.dicom.known_requests import KnownRequests


def _request(calling: str = "GETSCU", identity: bool = False) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID("1.2.840.10008.3.1.1.1")
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "DICOMGATE"
    syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    contexts = [build_context(sop, syntaxes) for sop in (CTImageStorage, MRImageStorage)]
    contexts.append(build_context(StudyRootQueryRetrieveInformationModelGet))
    for number, context in enumerate(contexts):
        context.context_id = 2 * number + 1
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = UID("1.2.276.0.7230010.3.0.3.6.8")
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CTImageStorage
    role.scu_role, role.scp_role = False, True
    items = [length, implementation, role]
    if identity:
        user = UserIdentityNegotiation()
        user.user_identity_type = 2
        user.primary_field = b"alice"
        user.secondary_field = b"secret"
        items.append(user)
    primitive.user_information = items
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _fresh(data: bytes) -> A_ASSOCIATE:
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(data)
    return pdu.to_primitive()


def _summary(primitive: A_ASSOCIATE) -> tuple[object, ...]:
    contexts = [
        (cx.context_id, cx.abstract_syntax, tuple(cx.transfer_syntax))
        for cx in primitive.presentation_context_definition_list
    ]
    items = [
        (type(item).__name__, sorted(vars(item).items())) for item in primitive.user_information
    ]
    return primitive.calling_ae_title, primitive.called_ae_title, contexts, items


def test_a_request_seen_again_gives_what_a_fresh_decode_gives() -> None:
    known = KnownRequests()
    data = _request()
    first, again = known.decode(data), known.decode(data)
    assert type(again) is A_ASSOCIATE_RQ and len(known) == 1  # pynetdicom keys on the class
    assert again.pdu_type == 0x01 and again.protocol_version == first.protocol_version == 1
    assert _summary(again.to_primitive()) == _summary(_fresh(data))
    assert bytes(again.encode()) == data


def test_what_one_association_changes_does_not_reach_the_next() -> None:
    known = KnownRequests()
    data = _request()
    mine = known.decode(data).to_primitive()
    mine.presentation_context_definition_list[0].transfer_syntax.append(UID("1.2.840.10008.1.2.2"))
    mine.presentation_context_definition_list[0].context_id = 99
    mine.presentation_context_definition_list.pop()
    mine.user_information[0].maximum_length_received = 1
    mine.result = 0x01
    theirs = known.decode(data).to_primitive()
    assert _summary(theirs) == _summary(_fresh(data))
    assert theirs.result is None


def test_a_request_with_a_user_identity_is_never_kept() -> None:
    known = KnownRequests()
    data = _request(identity=True)
    primitive = known.decode(data).to_primitive()
    assert len(known) == 0
    assert any(isinstance(i, UserIdentityNegotiation) for i in primitive.user_information)


def test_a_request_longer_than_the_limit_is_never_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _request()
    monkeypatch.setattr(known_requests, "LARGEST", len(data) - 1)
    known = KnownRequests()
    assert _summary(known.decode(data).to_primitive()) == _summary(_fresh(data))
    assert len(known) == 0


def test_the_least_recently_seen_request_is_forgotten_first() -> None:
    known = KnownRequests(kept=2)
    a, b, c = (_request(calling=name) for name in ("A", "B", "C"))
    known.decode(a)
    known.decode(b)
    known.decode(a)  # a is the most recent now
    known.decode(c)
    assert len(known) == 2
    assert known.decode(a).to_primitive().calling_ae_title == "A"
    assert len(known) == 2


@pytest.mark.parametrize("cut", [10, 80, 200])
def test_a_malformed_request_raises_and_is_not_kept(cut: int) -> None:
    known = KnownRequests()
    data = _request()
    broken = data[:6] + data[6:cut] + b"\xff" * 7  # the items run past their lengths
    with pytest.raises(Exception):  # noqa: B017  (pynetdicom's own error, as before)
        known.decode(broken)
    assert len(known) == 0
