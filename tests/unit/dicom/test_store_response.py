from typing import Any

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from dicomgate.dicom.store_response import store_response


def _primitive(status: int, **optional: Any) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = "1.2.3.4.5.6.7"  # odd length: padded with NUL
    rsp.Status = status
    for keyword, value in optional.items():
        setattr(rsp, keyword, value)
    return rsp


def _pynetdicom_command(rsp: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    [pdata] = list(message.encode_msg(1, 16382))
    [[_context, fragment]] = pdata.presentation_data_value_list
    assert fragment[:1] == b"\x03"
    return bytes(fragment[1:])


@pytest.mark.parametrize(
    "rsp",
    [
        _primitive(0x0000),
        _primitive(0xA900, ErrorComment="same SOP Instance UID, other content"),
        _primitive(0xC000, ErrorComment="odd length comment"),
        _primitive(0xA700, ErrorComment="x" * 64),
    ],
    ids=["success", "conflict", "odd-comment", "long-comment"],
)
def test_the_response_is_byte_for_byte_what_pynetdicom_encodes(rsp: C_STORE) -> None:
    assert store_response(rsp) == _pynetdicom_command(rsp)


def test_a_comment_longer_than_lo_allows_is_cut_as_the_receiver_cuts_it() -> None:
    encoded = store_response(_primitive(0xC000, ErrorComment="y" * 80))
    assert encoded is not None and b"y" * 64 in encoded and b"y" * 65 not in encoded


def test_a_response_with_other_parameters_is_left_to_pynetdicom() -> None:
    assert store_response(_primitive(0xC000, OffendingElement=[0x00100010])) is None
